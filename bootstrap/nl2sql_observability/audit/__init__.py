"""Persistent, scrubbed audit log of LLM prompts and responses (the remediation plan's `EventLogger`).

Every LLM call ends in one `CallRecord`; `submit(record)` queues it and returns at once. A background
writer (`audit.writer`) scrubs and caps the text, builds the event and stores it in the sink
(`OBSERVABILITY_AUDIT_SINK=file|sqlite`); it drains at exit and on SIGTERM. Nothing here ever
raises into the app: an event that cannot be stored is counted (`nl2sql.audit.events`) and logged.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Literal

from nl2sql_observability.audit.events import (
    FIELDS,
    AuditEvent,
    FilterError,
    Filters,
    event_from_record,
)
from nl2sql_observability.audit.settings import AuditConfigError, AuditSettings, load_audit_settings
from nl2sql_observability.audit.sinks import AuditSink, JsonlFileSink, SqliteSink
from nl2sql_observability.audit.writer import AuditWriter
from nl2sql_observability.callrecord import AuditRecord, CallRecord

from ..forksafe import ForkSafeLock

__all__ = [
    "FIELDS",
    "AuditConfigError",
    "AuditEvent",
    "AuditLog",
    "AuditSettings",
    "AuditSink",
    "AuditWriter",
    "CallRecord",
    "FilterError",
    "Filters",
    "JsonlFileSink",
    "SqliteSink",
    "get_audit_log",
    "load_audit_settings",
    "open_sink",
    "record_llm_call",
    "set_audit_log",
    "submit",
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
    """A sink and the background writer that feeds it; never raises."""

    def __init__(self, settings: AuditSettings, sink: AuditSink | None = None) -> None:
        self.settings = settings
        self.sink: AuditSink | None = (sink or open_sink(settings)) if settings.enabled else None
        self.writer: AuditWriter | None = None
        if self.sink is not None:
            text_max_chars = settings.text_max_chars
            self.writer = AuditWriter(
                self.sink,
                functools.partial(event_from_record, text_max_chars=text_max_chars),
                queue_size=settings.queue_size,
                queue_timeout=settings.queue_timeout,
                exit_timeout=settings.exit_timeout,
                where=f"{settings.resolved_path()} ({settings.sink})",
                reopen=functools.partial(open_sink, settings),
            )

    def submit(self, record: AuditRecord) -> bool:
        """Queue the record for the writer; True when accepted (see `AuditWriter.submit`)."""
        return self.writer is not None and self.writer.submit(record)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event submitted so far is stored (or counted as failed)."""
        return self.writer is None or self.writer.flush(timeout)

    def close(self) -> None:
        """Store what is queued (within `OBSERVABILITY_AUDIT_EXIT_TIMEOUT`) and close the sink."""
        if self.writer is not None:
            self.writer.close()
        elif self.sink is not None:
            self.sink.close()


_lock = ForkSafeLock()
_audit_log: AuditLog | None = None
_config_error_reported = False


def get_audit_log() -> AuditLog | None:
    """The process-wide audit log: the one `settings.use_settings` handed over (the distro and
    `configure()` do), else built on first use from `OBSERVABILITY_AUDIT_*` (None if invalid)."""
    global _audit_log, _config_error_reported
    current = _audit_log
    if current is not None:
        return current
    with _lock:
        if _audit_log is None:
            try:
                _audit_log = AuditLog(load_audit_settings())
            except AuditConfigError as exc:
                if not _config_error_reported:
                    _config_error_reported = True
                    _log.error("audit log disabled: %s", exc)
                return None
        return _audit_log


def set_audit_log(audit_log: AuditLog | None) -> None:
    """Replace the process-wide audit log (the old one writes what it queued and closes); `None`:
    rebuild from the environment on next use."""
    global _audit_log, _config_error_reported
    with _lock:
        if _audit_log is not None and _audit_log is not audit_log:
            _audit_log.close()
        _audit_log = audit_log
        _config_error_reported = False


def submit(record: AuditRecord) -> bool:
    """Queue one call record for the process-wide audit log; True when accepted. Never raises."""
    try:
        audit_log = get_audit_log()
        return audit_log is not None and audit_log.submit(record)
    except Exception:  # pragma: no cover - belt and braces: auditing never breaks the app
        _log.debug("submitting an audit event failed", exc_info=True)
        return False


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
    """Audit one LLM call made without our instrumentation: the trace and span ids come from the
    current span, tenant/user/session and node from the run state. Never raises."""
    try:
        from opentelemetry.trace import get_current_span

        from nl2sql_observability.context import current_node, current_user_context

        span_context = get_current_span().get_span_context()
        user = current_user_context()
        submit(
            CallRecord(
                trace_id=span_context.trace_id if span_context.is_valid else 0,
                span_id=span_context.span_id if span_context.is_valid else 0,
                tenant_id=user.tenant_id if user is not None else None,
                user_id=user.user_id if user is not None else None,
                session_id=user.session_id if user is not None else None,
                node=node if node is not None else current_node(),
                model=model,
                provider="unknown",
                response_model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost=None,
                status=status,
                error_type=error_type,
                error_message=error_message,
                end_time=time.time(),
                duration_s=latency_ms / 1000.0,
                prompt_text=prompt_text,
                response_text=response_text,
            )
        )
    except Exception:  # pragma: no cover - belt and braces: auditing never breaks the app
        _log.debug("record_llm_call failed", exc_info=True)
