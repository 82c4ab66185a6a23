"""Make a run's span, tenant and node current between two LangChain callbacks.

Callbacks come in start/end pairs, not as a `with` block, and LangGraph may deliver the end of a run in
another context than its start (a generator closed elsewhere), where a context-variable token cannot be
reset. So the previous values are remembered and put back only if this run is still the current one.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from nl2sql_observability.context import _NODE, _USER_CONTEXT, UserContext
from nl2sql_observability.instrumentation import _CURRENT_STEP, Step

__all__ = ["Activation"]


class Activation:
    """The values a run made current, and the ones it replaced."""

    __slots__ = ("_ctx", "_prev_ctx", "_prev_node", "_prev_step", "_prev_user")

    def __init__(self, ctx: Context, user: UserContext | None, node: str | None, step: Step | None) -> None:
        self._prev_ctx = otel_context.get_current()
        self._prev_user = _USER_CONTEXT.get()
        self._prev_node = _NODE.get()
        self._prev_step = _CURRENT_STEP.get()
        self._ctx = ctx
        otel_context.attach(ctx)  # the token is not kept: see restore()
        _USER_CONTEXT.set(user)
        _NODE.set(node)
        if step is not None:
            _CURRENT_STEP.set(step)

    def restore(self) -> None:
        """Put the previous values back if this run's context is still the current one."""
        if otel_context.get_current() is not self._ctx:
            return
        otel_context.attach(self._prev_ctx)
        _USER_CONTEXT.set(self._prev_user)
        _NODE.set(self._prev_node)
        _CURRENT_STEP.set(self._prev_step)
