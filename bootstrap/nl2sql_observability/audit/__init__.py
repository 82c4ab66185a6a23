"""Persistent, scrubbed audit log of LLM prompts and responses (the remediation plan's `EventLogger`).

`record_llm_call(...)` is called by our LLM handler while the `chat` span is current: the trace and
span ids come from that span, tenant/user/session and node from the tenant context. Prompt, response
and error text are scrubbed, then capped. The sink (`OBSERVABILITY_AUDIT_SINK=file|sqlite`) stores the
event whole before the call returns. Nothing here ever raises into the app: a failing sink is
reported once in the log (and again only after it recovered and failed anew).
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

from nl2sql_observability.audit.events import (
    FIELDS,
    AuditEvent,
    FilterError,
    Filters,
    build_event,
)
from nl2sql_observability.audit.settings import AuditConfigError, AuditSettings, load_audit_settings
from nl2sql_observability.audit.sinks import AuditSink, JsonlFileSink, SqliteSink

__all__ = [
    "FIELDS",
    "AuditConfigError",
    "AuditEvent",
    "AuditLog",
    "AuditSettings",
    "AuditSink",
    "FilterError",
    "Filters",
    "JsonlFileSink",
    "SqliteSink",
    "get_audit_log",
    "load_audit_settings",
    "open_sink",
    "record_llm_call",
    "set_audit_log",
]

_log = logging.getLogger("nl2sql_observability.audit")


def open_sink(settings: AuditSettings) -> AuditSink:
    path = settings.resolved_path()
    if settings.sink == "sqlite":
        return SqliteSink(
            path, fsync=settings.fsync, retention=settings.retention, max_disk_bytes=settings.max_disk_bytes
        )
    return JsonlFileSink(
        path,
        max_bytes=settings.max_bytes,
        backup_count=settings.backup_count,
        retention=settings.retention,
        max_disk_bytes=settings.max_disk_bytes,
        fsync=settings.fsync,
    )


class AuditLog:
    """Builds events and hands them to a sink; never raises; reports a failing sink once."""

    def __init__(self, settings: AuditSettings, sink: AuditSink | None = None) -> None:
        self.settings = settings
        self.sink: AuditSink | None = (sink or open_sink(settings)) if settings.enabled else None
        self._failing = False
        self._state_lock = threading.Lock()

    def record(self, **fields: object) -> AuditEvent | None:
        if self.sink is None:
            return None
        try:
            event = build_event(text_max_chars=self.settings.text_max_chars, **fields)  # type: ignore[arg-type]
            self.sink.write(event)
        except Exception as exc:
            with self._state_lock:
                first, self._failing = not self._failing, True
            if first:
                _log.error(
                    "audit log %s (%s) is failing; LLM calls are not being audited until it recovers: %s: %s",
                    self.settings.resolved_path(),
                    self.settings.sink,
                    type(exc).__name__,
                    exc,
                )
            return None
        if self._failing:
            with self._state_lock:
                recovered, self._failing = self._failing, False
            if recovered:
                _log.warning("audit log %s recovered", self.settings.resolved_path())
        return event

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


_lock = threading.Lock()
_audit_log: AuditLog | None = None
_config_error_reported = False


def get_audit_log() -> AuditLog | None:
    """The process-wide audit log, built on first use from the settings `configure()` loaded, else
    from `OBSERVABILITY_AUDIT_*` (None if invalid)."""
    global _audit_log, _config_error_reported
    current = _audit_log
    if current is not None:
        return current
    with _lock:
        if _audit_log is None:
            from nl2sql_observability.settings import current_settings

            tree = current_settings()
            try:
                _audit_log = AuditLog(tree.audit if tree is not None else load_audit_settings())
            except AuditConfigError as exc:
                if not _config_error_reported:
                    _config_error_reported = True
                    _log.error("audit log disabled: %s", exc)
                return None
        return _audit_log


def set_audit_log(audit_log: AuditLog | None) -> None:
    """Replace the process-wide audit log (`None`: rebuild from the settings, else the environment,
    on next use)."""
    global _audit_log, _config_error_reported
    with _lock:
        if _audit_log is not None and _audit_log is not audit_log:
            _audit_log.close()
        _audit_log = audit_log
        _config_error_reported = False


def _current_ids() -> tuple[str | None, str | None]:
    from opentelemetry.trace import get_current_span

    ctx = get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def record_llm_call(
    *,
    model: str,
    prompt_text: str,
    response_text: str,
    input_tokens: int | None,
    output_tokens: int | None,
    latency_ms: float,
    status: Literal["ok", "error"],
    node: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
) -> None:
    """Write one audit event. Call it while the LLM call's span is current: trace/span ids and the
    tenant context are taken from the active context. Never raises; a broken sink is reported once."""
    try:
        audit_log = get_audit_log()
        if audit_log is None or audit_log.sink is None:
            return
        trace_id, span_id = _current_ids()
        tenant_id = user_id = session_id = None
        try:
            from nl2sql_observability import context

            user = context.current_user_context()
            if node is None:
                node = context.current_node()
        except Exception:  # the context module must never break the app's LLM call
            user = None
        if user is not None:
            tenant_id, user_id, session_id = user.tenant_id, user.user_id, user.session_id
        audit_log.record(
            model=model,
            prompt_text=prompt_text,
            response_text=response_text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            status=status,
            node=node,
            error_type=error_type,
            error_message=error_message,
            trace_id=trace_id,
            span_id=span_id,
            tenant_id=tenant_id,
            user_id=user_id,
            session_id=session_id,
        )
    except Exception:  # pragma: no cover - belt and braces: auditing never breaks the app
        _log.debug("record_llm_call failed", exc_info=True)
