"""The audit log's background writer: the app's thread queues a call record and returns at once; one
thread per process builds the event (scrubbing, capping) and writes it, in arrival order.

Guarantees (docs/telemetry-contract.md, "Audit event"):
- the app's thread never scrubs or touches the disk; it waits only when the queue is full, and then at
  most `queue_timeout` seconds; an event that still finds no room is not accepted: it is counted
  (`nl2sql.audit.events{nl2sql.audit.outcome=failed, error.type=queue_full}`) and logged;
- every accepted event is written, or counted as failed and logged (a sink error, or the exit drain
  running out of `exit_timeout`): nothing is dropped silently;
- normal exit (atexit) and SIGTERM (when the app left its default action in place) drain the queue
  before the process ends, within `exit_timeout`;
- after `fork()` the child starts with an empty queue and its own thread (the parent's queued events
  stay the parent's to write); the sinks' own locks keep several processes' lines whole.

Why not `logging.handlers.QueueHandler`/`QueueListener`: an unbounded queue by default, a full bounded
one raises into the caller, and it counts nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from nl2sql_observability import semconv as sc
from nl2sql_observability.audit.events import AuditEvent
from nl2sql_observability.audit.sinks import AuditSink
from nl2sql_observability.callrecord import AuditRecord

from ..forksafe import ForkSafeLock

__all__ = ["AuditWriter", "counts", "install_sigterm_drain", "observe"]

_log = logging.getLogger("nl2sql_observability.audit")

ACCEPTED, WRITTEN, FAILED = "accepted", "written", "failed"
QUEUE_FULL = "queue_full"
EXIT_TIMEOUT = "exit_timeout"
# The writer takes at most this many events per wake-up, so `flush` waiters see progress.
_BATCH = 256
# A full queue is reported at most this often (with the count since the last report).
_REPORT_EVERY_S = 30.0

# Process-wide totals by (outcome, error.type), read by the observable counter at export time: the
# app's thread pays for an integer increment, not for a metric update.
_totals: dict[tuple[str, str | None], int] = {}
_totals_lock = ForkSafeLock()
_instrument: Any = None


def _count(
    outcome: str,
    n: int = 1,
    error_type: str | None = None,
    mine: dict[tuple[str, str | None], int] | None = None,
) -> None:
    with _totals_lock:
        key = (outcome, error_type)
        _totals[key] = _totals.get(key, 0) + n
        if mine is not None:
            mine[key] = mine.get(key, 0) + n


def counts() -> dict[tuple[str, str | None], int]:
    """This process's audit event counts by (outcome, error.type) since it started."""
    with _totals_lock:
        return dict(_totals)


def observe(options: Any) -> Iterable[Any]:
    """Observations of `nl2sql.audit.events` (the observable counter's callback)."""
    from opentelemetry.metrics import Observation

    for (outcome, error_type), value in counts().items():
        attrs = {sc.AUDIT_OUTCOME: outcome}
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
        yield Observation(value, attrs)


def _register_instrument() -> None:
    """`nl2sql.audit.events`, on the app's global meter (a proxy until the provider is set)."""
    global _instrument
    if _instrument is not None:
        return
    try:
        from opentelemetry import metrics

        _instrument = metrics.get_meter("nl2sql_observability.audit").create_observable_counter(
            sc.AUDIT_EVENTS,
            callbacks=[observe],
            unit=sc.UNIT_EVENT,
            description="Audit events accepted by the queue, written, and not written (with error.type).",
        )
    except Exception:  # bookkeeping never breaks the app
        _log.debug("creating the audit counter failed", exc_info=True)


class AuditWriter:
    """A bounded queue of call records and the thread that turns them into stored events."""

    def __init__(
        self,
        sink: AuditSink,
        build: Callable[[AuditRecord], AuditEvent],
        *,
        queue_size: int,
        queue_timeout: float,
        exit_timeout: float,
        where: str,
        reopen: Callable[[], AuditSink] | None = None,
    ) -> None:
        self.sink = sink
        # After fork() a lock the parent's writer thread held inside the sink stays held in the child:
        # the child writes through a sink of its own.
        self._reopen = reopen
        self._build = build
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self.exit_timeout = exit_timeout
        self._where = where
        self._reset_state()
        _register_instrument()
        _WRITERS.add(self)

    def _reset_state(self) -> None:
        # Re-entrant: the SIGTERM drain may run in the main thread while it is inside `submit`.
        self._cond = threading.Condition(threading.RLock())
        self._queue: deque[AuditRecord] = deque()
        self._busy = 0  # taken from the queue, not yet written or failed
        self._thread: threading.Thread | None = None
        self._closed = False
        self._pid = os.getpid()
        self._failing = False
        self._full_since_report = 0
        self._next_full_report = 0.0
        self._counts: dict[tuple[str, str | None], int] = {}

    def counts(self) -> dict[tuple[str, str | None], int]:
        """This writer's counts by (outcome, error.type) (since the fork, in a forked child)."""
        with _totals_lock:
            return dict(self._counts)

    # --- the app's side ------------------------------------------------------------------------
    def submit(self, record: AuditRecord) -> bool:
        """Queue one record; True when accepted. Waits at most `queue_timeout` for room. Never raises."""
        try:
            if self._pid != os.getpid():
                self._reset_state()  # forked: the parent's queue and thread are not ours
                if self._reopen is not None:
                    self.sink = self._reopen()
            cond = self._cond
            with cond:
                if self._closed:
                    return self._reject("closed")
                if len(self._queue) >= self.queue_size and not cond.wait_for(
                    lambda: len(self._queue) < self.queue_size or self._closed, self.queue_timeout
                ):
                    return self._reject(QUEUE_FULL)
                if self._closed:
                    return self._reject("closed")
                self._queue.append(record)
                if self._thread is None:
                    self._start_thread()
                cond.notify_all()
            _count(ACCEPTED, mine=self._counts)
            return True
        except Exception:  # pragma: no cover - auditing never breaks the app
            _log.debug("queueing an audit event failed", exc_info=True)
            return False

    def _reject(self, reason: str) -> bool:
        """Count and report an event that was not accepted (called under the condition's lock)."""
        _count(FAILED, 1, reason, self._counts)
        self._full_since_report += 1
        now = time.monotonic()
        if now >= self._next_full_report:
            self._next_full_report = now + _REPORT_EVERY_S
            n, self._full_since_report = self._full_since_report, 0
            _log.error(
                "audit log %s: %d event(s) not written (%s): the writer is behind by %d events."
                " Raise OBSERVABILITY_AUDIT_QUEUE_SIZE or make the sink faster (no fsync, a local disk).",
                self._where,
                n,
                reason,
                len(self._queue),
            )
        return False

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name="nl2sql-audit-writer", daemon=True)
        thread.start()
        self._thread = thread
        install_sigterm_drain()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is written (or failed); True if done in time."""
        if self._pid != os.getpid():
            return True
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, write what is queued (at most `timeout`, default `exit_timeout`), close the
        sink. What could not be written in time is counted and logged. True when nothing was left."""
        if self._pid != os.getpid():
            return True
        budget = self.exit_timeout if timeout is None else timeout
        done = self.flush(budget)
        with self._cond:
            self._closed = True
            # the batch the writer thread holds is not written yet either: count it too
            left = len(self._queue) + self._busy
            self._queue.clear()
            self._cond.notify_all()
        if left:
            _count(FAILED, left, EXIT_TIMEOUT, self._counts)
            _log.error(
                "audit log %s: %d queued event(s) not written: the writer did not finish within %.1fs",
                self._where,
                left,
                budget,
            )
        if done:
            with contextlib.suppress(Exception):
                self.sink.close()
        return done and not left

    # --- the writer's side ---------------------------------------------------------------------
    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                self._busy = len(batch)
                cond.notify_all()  # room in the queue
            for record in batch:
                self._write(record)
                with cond:
                    self._busy -= 1
                    if not self._busy:
                        cond.notify_all()

    def _write(self, record: AuditRecord) -> None:
        try:
            self.sink.write(self._build(record))
        except Exception as exc:
            _count(FAILED, 1, type(exc).__name__, self._counts)
            if not self._failing:
                self._failing = True
                _log.error(
                    "audit log %s is failing; LLM calls are not being audited until it recovers"
                    " (each lost event is counted in nl2sql.audit.events{outcome=failed}): %s: %s",
                    self._where,
                    type(exc).__name__,
                    exc,
                )
            return
        _count(WRITTEN, mine=self._counts)
        if self._failing:
            self._failing = False
            _log.warning("audit log %s recovered", self._where)


# Every live writer of this process, drained at exit and on SIGTERM.
_WRITERS: weakref.WeakSet[AuditWriter] = weakref.WeakSet()


def drain_all() -> None:
    """Write what every writer of this process has queued (each within its `exit_timeout`)."""
    for writer in list(_WRITERS):
        with contextlib.suppress(Exception):
            writer.close()


atexit.register(drain_all)

_sigterm_installed = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Drain the audit queue, then end the process as SIGTERM would have (same exit status)."""
    drain_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def install_sigterm_drain() -> None:
    """On SIGTERM, drain the audit queue before dying. Only when SIGTERM still has its default action
    (an app's own handler usually exits normally, and atexit drains then) and only from the main
    thread (where Python allows installing handlers). Never raises."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        _log.debug("cannot install the SIGTERM drain", exc_info=True)
