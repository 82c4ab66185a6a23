"""Who a graph run is for: tenant, user and session from the run config, the graph state or the
enclosing `user_context()`, each value validated by the rules of `UserContext`.

An invalid value is dropped with a rate-limited warning and the next source is tried: telemetry never
raises into the app, and a bad tenant never becomes a metric label.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import baggage
from opentelemetry.context import Context

from nl2sql_observability import semconv as sc
from nl2sql_observability.context import _ID_RE, _TENANT_RE, UserContext, current_user_context

__all__ = ["Identity", "IdentityKeys", "config_values", "resolve_identity"]

_log = logging.getLogger("nl2sql_observability.autoinstrument")
_WARN_INTERVAL_S = 60.0


@dataclass(frozen=True)
class IdentityKeys:
    """The run-config keys that carry tenant, user and session."""

    tenant: str = "tenant_id"
    user: str = "user_id"
    session: str = "thread_id"


@dataclass(frozen=True)
class Identity:
    """A validated tenant/user/session triple (any part may be missing)."""

    tenant_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None

    def user_context(self) -> UserContext | None:
        """As a `UserContext` (needs a tenant), for the contextvar that logs and the audit log read."""
        if self.tenant_id is None:
            return None
        return UserContext.model_construct(
            tenant_id=self.tenant_id, user_id=self.user_id, session_id=self.session_id, roles=()
        )

    def in_baggage(self, ctx: Context) -> Context:
        """`ctx` with this identity as the allow-listed baggage (absent parts removed)."""
        for key, value in (
            (sc.TENANT_ID, self.tenant_id),
            (sc.USER_ID, self.user_id),
            (sc.SESSION_ID, self.session_id),
        ):
            ctx = (
                baggage.set_baggage(key, value, ctx)
                if value is not None
                else baggage.remove_baggage(key, ctx)
            )
        return ctx


EMPTY = Identity()


class _RateLimitedWarning:
    """At most one warning per source and field every minute, with the count of the ones held back."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, held = self._last.get(key, (-_WARN_INTERVAL_S, 0))
            if now - last < _WARN_INTERVAL_S:
                self._last[key] = (last, held + 1)
                return
            self._last[key] = (now, 0)
        suffix = f" ({held} more since the last warning)" if held else ""
        _log.warning("%s%s", message, suffix)


_warnings = _RateLimitedWarning()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _valid(field: str, value: Any, source: str) -> str | None:
    if value is None or value == "":
        return None
    pattern = _TENANT_RE if field == "tenant_id" else _ID_RE
    if isinstance(value, int | float) and not isinstance(value, bool) and field != "tenant_id":
        value = str(value)
    if isinstance(value, str) and pattern.match(value):
        return value
    allowed = (
        sc.TENANT_ID_PATTERN if field == "tenant_id" else "1-128 printable ASCII characters without spaces"
    )
    _warnings.warn(
        f"{source}:{field}",
        f"nl2sql-observability: ignoring {field} {_shown(value)} from {source}: not allowed "
        f"(allowed: {allowed}); the run continues without it",
    )
    return None


def config_values(keys: IdentityKeys, *configs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The identity values found in run configs (later configs win; `configurable` over `metadata`)."""
    found: dict[str, Any] = {}
    for config in configs:
        if not config:
            continue
        for section in ("metadata", "configurable"):
            values = config.get(section)
            if not isinstance(values, Mapping):
                continue
            for field, key in (
                ("tenant_id", keys.tenant),
                ("user_id", keys.user),
                ("session_id", keys.session),
            ):
                if key in values and values[key] is not None:
                    found[field] = values[key]
    return found


def _state_values(state: Any) -> dict[str, Any]:
    """`user_context` of a graph state (a mapping or an object; itself a mapping, a model or an object)."""
    ctx = state.get("user_context") if isinstance(state, Mapping) else getattr(state, "user_context", None)
    if ctx is None:
        return {}
    if isinstance(ctx, Mapping):
        return {f: ctx.get(f) for f in ("tenant_id", "user_id", "session_id")}
    return {f: getattr(ctx, f, None) for f in ("tenant_id", "user_id", "session_id")}


def resolve_identity(
    config: Mapping[str, Any], state: Any, metadata: Mapping[str, Any] | None, keys: IdentityKeys
) -> Identity:
    """Each of tenant, user, session from the first source that has a valid value: the run config
    (`configurable`, then `metadata`), the state's `user_context`, the enclosing `user_context()`
    or incoming baggage. Never raises."""
    try:
        enclosing = current_user_context()
        sources: list[tuple[str, Mapping[str, Any]]] = [
            ("the run config", config),
            ("the run metadata", config_values(keys, {"metadata": metadata}) if metadata else {}),
            ("the graph state's user_context", _state_values(state)),
        ]
        if enclosing is not None:
            sources.append(
                ("user_context()", enclosing.model_dump(include={"tenant_id", "user_id", "session_id"}))
            )
        chosen: dict[str, str | None] = {}
        for field in ("tenant_id", "user_id", "session_id"):
            chosen[field] = None
            for source, values in sources:
                value = _valid(field, values.get(field), source)
                if value is not None:
                    chosen[field] = value
                    break
        return Identity(chosen["tenant_id"], chosen["user_id"], chosen["session_id"])
    except Exception:  # pragma: no cover - identity is best effort, never an error in the app
        _log.debug("resolving the run's identity failed", exc_info=True)
        return EMPTY
