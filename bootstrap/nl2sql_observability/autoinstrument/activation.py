"""Make a run's span, tenant and node current between two LangChain callbacks.

Callbacks come in start/end pairs, not as a `with` block, and the end of a run may arrive in another
context than its start: LangChain's async callback manager delivers `on_chain_end` inside
`asyncio.shield`, i.e. in a copy of the caller's context. A context-variable token cannot be reset
there, and resetting the copy would leave the caller's context pointing at a finished span. So:
- the previous values are remembered and put back where the run's context is still the current one;
- a run that starts where a finished run's context is still current first unwinds it;
- `Snapshot` puts the caller's values back when a graph's stream ends (the graph wrapper uses it), so
  nothing of a run outlives the run in the app's own task or thread.
"""

from __future__ import annotations

from contextvars import ContextVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from nl2sql_observability.context import UserContext, current_run_state, set_run_state
from nl2sql_observability.steps import Step

__all__ = ["Activation", "Snapshot"]

_ACTIVE: ContextVar[Activation | None] = ContextVar("nl2sql_activation", default=None)


class Snapshot:
    """The values of the current context that runs change, to put back later."""

    __slots__ = ("activation", "ctx", "state")

    def __init__(self) -> None:
        self.ctx = otel_context.get_current()
        self.state = current_run_state()
        self.activation = _ACTIVE.get()

    def put_back(self) -> None:
        otel_context.attach(self.ctx)  # the token is not kept: there is nothing to reset it against
        set_run_state(*self.state)
        _ACTIVE.set(self.activation)

    def restore_if_changed(self) -> None:
        """Put the values back if a run left its own behind (its end was delivered elsewhere)."""
        if _ACTIVE.get() is not self.activation:
            self.put_back()


class Activation:
    """The values a run made current, and the ones it replaced (kept here rather than in a
    `Snapshot`: one object less per run on the request path)."""

    __slots__ = ("_ctx", "_prev_activation", "_prev_ctx", "_prev_state", "ended")

    def __init__(self, ctx: Context, user: UserContext | None, node: str | None, step: Step | None) -> None:
        _unwind_finished()
        self._prev_ctx = otel_context.get_current()
        self._prev_state = current_run_state()
        self._prev_activation = _ACTIVE.get()
        self._ctx = ctx
        self.ended = False
        otel_context.attach(ctx)
        set_run_state(user, node, step if step is not None else self._prev_state.step)
        _ACTIVE.set(self)

    def is_current(self) -> bool:
        return _ACTIVE.get() is self and otel_context.get_current() is self._ctx

    def restore(self) -> None:
        """Mark the run ended; put the previous values back if its context is the current one."""
        self.ended = True
        if self.is_current():
            self._put_back()

    def _put_back(self) -> None:
        otel_context.attach(self._prev_ctx)  # the token is not kept: there is nothing to reset it against
        set_run_state(*self._prev_state)
        _ACTIVE.set(self._prev_activation)


def _unwind_finished() -> None:
    """Unwind the runs whose end was delivered in another context but whose values are still here."""
    active = _ACTIVE.get()
    while active is not None and active.ended and active.is_current():
        active._put_back()
        active = _ACTIVE.get()
