"""Audit retention bookkeeping: the early-deletion (disk cap) warning and counter."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from nl2sql_observability import semconv as sc
from nl2sql_observability.audit.events import format_timestamp

from ..forksafe import ForkSafeLock

EVICTED_EVENTS = sc.AUDIT_EVICTED_EVENTS
_log = logging.getLogger("nl2sql_observability.audit")
_counter: Any = None
# At most one eviction warning per this many seconds per process; evictions in between are folded
# into the next line (the counter counts every one).
EVICTION_LOG_INTERVAL_S = 60.0
_monotonic = time.monotonic
_log_lock = ForkSafeLock()
_last_logged: float | None = None
_folded_events = 0
_folded_evictions = 0


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
    global _counter, _last_logged, _folded_events, _folded_evictions
    try:
        with _log_lock:
            now = _monotonic()
            quiet = _last_logged is not None and now - _last_logged < EVICTION_LOG_INTERVAL_S
            if quiet:
                _folded_events += events
                _folded_evictions += 1
            else:
                _last_logged = now
                folded, folded_evictions = _folded_events, _folded_evictions
                _folded_events = _folded_evictions = 0
        if not quiet:
            since = (
                f" (and {folded} more events in {folded_evictions} earlier deletions not logged)"
                if folded
                else ""
            )
            _log.warning(
                "audit log %s: deleted %d events before their retention ran out (%s)%s; the oldest event"
                " kept is from %s. Raise OBSERVABILITY_AUDIT_MAX_DISK_BYTES or lower the volume.",
                path,
                events,
                reason,
                since,
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
