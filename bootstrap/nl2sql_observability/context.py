"""Run state: who asked (a strict user-context model carried in OTel baggage and a contextvar), which
graph node and which step are running. This module is the one owner of that state; every other module
reads and changes it through the public accessors below.

    with user_context(UserContext(tenant_id="acme", user_id="u-1", session_id="s-9")):
        graph.invoke(...)   # every span gets tenant.id/user.id/session.id, metrics get tenant.id,
                            # log lines get tenant_id/user_id/session_id

The model replaces the untyped `user_context` dict of the NL2SQL `GraphState`; `GraphState` is a
base state type that holds it. Both the contextvar (fast, typed) and baggage (propagates to
downstream services, read by the span processor) are set and restored on exit; this works for
threads (copy the context, as `asyncio` and LangGraph do) and asyncio tasks alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, NamedTuple

from opentelemetry import baggage
from opentelemetry import context as otel_context
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from nl2sql_observability.semconv import SESSION_ID, TENANT_ID, TENANT_ID_PATTERN, USER_ID

__all__ = [
    "GraphState",
    "RunState",
    "UserContext",
    "current_node",
    "current_run_state",
    "current_step",
    "current_tenant_id",
    "current_user_context",
    "is_valid_tenant_id",
    "reset_node",
    "reset_step",
    "set_node",
    "set_run_state",
    "set_step",
    "user_context",
]

_TENANT_RE = re.compile(TENANT_ID_PATTERN.rstrip("$") + r"\Z")
# user/session ids: printable, no whitespace or control characters (they travel in baggage headers).
_ID_RE = re.compile(r"[\x21-\x7e]{1,128}\Z")
_ID_ALLOWED = "1-128 printable ASCII characters without spaces"
_TENANT_ALLOWED = (
    "1-64 characters: lower-case letters, digits, '_', '.', '-', starting with a letter or digit "
    f"(pattern {TENANT_ID_PATTERN})"
)


class UserContext(BaseModel):
    """Who asked: tenant, user, session, roles. Strict; unknown fields are rejected.

    `tenant_id` must match the contract pattern `^[a-z0-9][a-z0-9_.-]{0,63}$` (it becomes a metric
    label); `user_id` and `session_id` are optional opaque ids (never put on metrics).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    tenant_id: str
    user_id: str | None = None
    session_id: str | None = None
    roles: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = set(cls.model_fields)
            unknown = [k for k in data if k not in allowed]
            if unknown:
                key = unknown[0]
                raise ValueError(
                    f"unknown user-context field {key!r} (value {data[key]!r}); "
                    f"allowed fields: {', '.join(cls.model_fields)}"
                )
        return data

    @field_validator("tenant_id")
    @classmethod
    def _check_tenant(cls, value: str) -> str:
        if not _TENANT_RE.match(value):
            raise ValueError(f"tenant_id {value!r} is not allowed; allowed: {_TENANT_ALLOWED}")
        return value

    @field_validator("user_id", "session_id")
    @classmethod
    def _check_id(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not _ID_RE.match(value):
            raise ValueError(f"{info.field_name} {value!r} is not allowed; allowed: {_ID_ALLOWED}")
        return value

    @field_validator("roles", mode="before")
    @classmethod
    def _roles_as_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class GraphState(BaseModel):
    """Base LangGraph state: holds the typed user context (the plan's `user_context` in `GraphState`).

    Apps subclass it with their own fields; LangGraph validates it on every step.
    """

    model_config = ConfigDict(extra="forbid")

    user_context: UserContext


_USER_CONTEXT: ContextVar[UserContext | None] = ContextVar("nl2sql_user_context", default=None)
_NODE: ContextVar[str | None] = ContextVar("nl2sql_node", default=None)
# The innermost running step (`steps.Step` or a borrowed one); typed loosely so this bottom module
# imports nothing above it.
_CURRENT_STEP: ContextVar[Any] = ContextVar("nl2sql_current_step", default=None)


@contextmanager
def user_context(ctx: UserContext | Mapping[str, Any]) -> Iterator[UserContext]:
    """Make `ctx` the active user context (contextvar + baggage `tenant.id`/`user.id`/`session.id`).

    A mapping is validated into a `UserContext` first (raising `pydantic.ValidationError`).
    Restores the previous context on exit, also when the body raises.
    """
    model = ctx if isinstance(ctx, UserContext) else UserContext.model_validate(dict(ctx))
    octx = baggage.set_baggage(TENANT_ID, model.tenant_id)
    for key, value in ((USER_ID, model.user_id), (SESSION_ID, model.session_id)):
        octx = (
            baggage.set_baggage(key, value, context=octx)
            if value is not None
            else baggage.remove_baggage(key, context=octx)
        )
    var_token = _USER_CONTEXT.set(model)
    otel_token = otel_context.attach(octx)
    try:
        yield model
    finally:
        otel_context.detach(otel_token)
        try:
            _USER_CONTEXT.reset(var_token)
        except ValueError:  # exited in another context (e.g. a generator finalised elsewhere)
            _USER_CONTEXT.set(None)


def current_user_context() -> UserContext | None:
    """The user context active in this task/thread, if any.

    Falls back to a valid `tenant.id` in incoming baggage (propagated from an upstream service);
    an invalid baggage tenant is ignored rather than trusted.
    """
    ctx = _USER_CONTEXT.get()
    if ctx is not None:
        return ctx
    tenant = baggage.get_baggage(TENANT_ID)
    if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
        return None
    user = baggage.get_baggage(USER_ID)
    session = baggage.get_baggage(SESSION_ID)
    return UserContext.model_construct(
        tenant_id=tenant,
        user_id=user if isinstance(user, str) and _ID_RE.match(user) else None,
        session_id=session if isinstance(session, str) and _ID_RE.match(session) else None,
        roles=(),
    )


def is_valid_tenant_id(value: object) -> bool:
    """True for a tenant id the contract allows (it is a metric label as it is, and never scrubbed)."""
    return isinstance(value, str) and _TENANT_RE.match(value) is not None


def current_tenant_id() -> str | None:
    """Shortcut for the hot path: the active tenant id or None."""
    ctx = _USER_CONTEXT.get()
    if ctx is not None:
        return ctx.tenant_id
    found = current_user_context()
    return found.tenant_id if found is not None else None


def current_node() -> str | None:
    """The name of the NL2SQL graph node running in this task/thread, if any."""
    return _NODE.get()


def set_node(name: str | None) -> Token[str | None]:
    """Make `name` the running node; reset with `reset_node(token)`."""
    return _NODE.set(name)


def reset_node(token: Token[str | None]) -> None:
    """Undo `set_node` (nothing when exited in another context than entered, e.g. a generator
    finalised elsewhere)."""
    try:  # noqa: SIM105 - cheaper than contextlib.suppress on the hot path
        _NODE.reset(token)
    except ValueError:
        pass


def current_step() -> Any:
    """The innermost running step (node or workflow) of this task/thread, if any."""
    return _CURRENT_STEP.get()


def set_step(step: Any) -> Token[Any]:
    """Make `step` the innermost running step; reset with `reset_step(token)`."""
    return _CURRENT_STEP.set(step)


def reset_step(token: Token[Any]) -> None:
    """Undo `set_step` (nothing when exited in another context than entered)."""
    try:  # noqa: SIM105 - cheaper than contextlib.suppress on the hot path
        _CURRENT_STEP.reset(token)
    except ValueError:
        pass


class RunState(NamedTuple):
    """The run state of one task/thread, as a value to put back later."""

    user: UserContext | None
    node: str | None
    step: Any


def current_run_state() -> RunState:
    return RunState(_USER_CONTEXT.get(), _NODE.get(), _CURRENT_STEP.get())


def set_run_state(user: UserContext | None, node: str | None, step: Any) -> None:
    """Set all three without tokens: for callbacks that start and end a run in separate calls,
    where the end may arrive in another context (see `autoinstrument.activation`)."""
    _USER_CONTEXT.set(user)
    _NODE.set(node)
    _CURRENT_STEP.set(step)
