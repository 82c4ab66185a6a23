"""Audit retention bookkeeping: the early-deletion (disk cap) warning and counter."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from nl2sql_observability import semconv as sc
from nl2sql_observability.audit.events import format_timestamp

EVICTED_EVENTS = sc.AUDIT_EVICTED_EVENTS
_log = logging.getLogger("nl2sql_observability.audit")
_counter: Any = None


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def cutoff(now: datetime, retention: timedelta) -> str:
    """Timestamp text before which events have outlived `retention`."""
    try:
        return format_timestamp(now - retention)
    except (OverflowError, ValueError):
        return format_timestamp(datetime(1, 1, 2, tzinfo=timezone.utc))


def record_eviction(*, sink: str, path: object, events: int, oldest_kept: str | None, reason: str) -> None:
    """Log and count events deleted before their retention ran out. Never raises."""
    global _counter
    try:
        _log.warning(
            "audit log %s: deleted %d events before their retention ran out (%s); the oldest event kept"
            " is from %s. Raise OBSERVABILITY_AUDIT_MAX_DISK_BYTES or lower the volume.",
            path,
            events,
            reason,
            oldest_kept or "-",
        )
        if _counter is None:
            from opentelemetry import metrics

            _counter = metrics.get_meter("nl2sql_observability.audit").create_counter(
                EVICTED_EVENTS,
                unit=sc.UNIT_EVENT,
                description="Audit events deleted before their retention ran out (disk cap or file count)",
            )
        _counter.add(events, {sc.AUDIT_SINK: sink})
    except Exception:  # bookkeeping must never break a write
        _log.debug("recording an audit eviction failed", exc_info=True)
