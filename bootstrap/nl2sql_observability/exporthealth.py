"""One log line per change of an OTLP endpoint's state (down, back up) instead of the SDK's retry noise.

The OTLP exporters log every retry ("Transient error ... retrying in 1.00s") and every failed batch
from their own module loggers, several lines per batch while a collector is down, and these land in
the app's output. Here:
- `WatchedSpanExporter`/`WatchedMetricExporter`/`WatchedLogExporter` wrap a network exporter, never
  let it raise, and report each export's outcome to `ExportHealth`;
- `ExportHealth` logs one line (logger `nl2sql_observability.export`, so it follows the app's logging
  setup: a JSON record when JSON logs are on) when an endpoint goes down or comes back, at most one
  per `min_interval_s` per endpoint (a flapping endpoint's changes in between are folded);
- `ExportNoiseFilter` drops what the exporter loggers say while one of our exports runs in the same
  thread, keeping its first message as the reason given in our line. A logger filter because it is
  the one hook that keeps those records from every handler the app may have, without touching the
  app's handlers or the loggers' levels; records outside an export (e.g. a bad compression setting
  read at start-up) still pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from nl2sql_observability.safetext import redact_url

__all__ = [
    "EXPORTER_LOGGER_PREFIXES",
    "ExportHealth",
    "ExportNoiseFilter",
    "WatchedLogExporter",
    "WatchedMetricExporter",
    "WatchedSpanExporter",
    "checked_session",
    "install_noise_filter",
]

LOGGER_NAME = "nl2sql_observability.export"
# The loggers the OTLP exporters (http and grpc, and their shared HTTP client) log from.
EXPORTER_LOGGER_PREFIXES = ("opentelemetry.exporter.",)

_log = logging.getLogger(LOGGER_NAME)
_in_export = threading.local()
R = TypeVar("R")

try:
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogResult
except ImportError:  # SDKs before the LogRecord* names
    from opentelemetry.sdk._logs.export import LogExportResult as _LogResult  # type: ignore[assignment]


class ExportNoiseFilter(logging.Filter):
    """Drops exporter log records emitted inside a watched export; remembers the first as the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_in_export, "active", False):
            return True
        if getattr(_in_export, "reason", None) is None:
            _in_export.reason = _reason(record)
        return False


def _reason(record: logging.LogRecord) -> str | None:
    """The error an exporter record is about, short: its innermost exception's last clause (urllib3
    wraps "Connection refused" three deep), a gRPC status code, or None when it names none."""
    first = record.args[0] if isinstance(record.args, tuple) and record.args else None
    for _ in range(8):  # requests wraps urllib3 in args[0], urllib3 its cause in `.reason`
        inner = getattr(first, "reason", None) or (getattr(first, "args", None) or (None,))[0]
        if not (isinstance(first, BaseException) and isinstance(inner, BaseException)):
            break
        first = inner
    if isinstance(first, BaseException):
        return str(first).rsplit(": ", 1)[-1].rstrip("\"')")[:200] or type(first).__name__
    if first is not None and type(first).__name__ == "StatusCode":  # grpc.StatusCode, without importing grpc
        return str(first)
    return None


_FILTER = ExportNoiseFilter()
_UNITS = {
    "traces": ("span", "spans"),
    "logs": ("log record", "log records"),
    "metrics": ("metric export", "metric exports"),
}


def _count(n: int, signal: str) -> str:
    one, many = _UNITS.get(signal, (signal, signal))
    return f"{n} {one if n == 1 else many}"


def checked_session(signal: str) -> Any:
    """A `requests.Session` for an OTLP/HTTP exporter that turns a 2xx answer whose body is not an
    OTLP response (a proxy's or another service's page) into a failure, so it is reported instead
    of counted as sent. Status 400 because the exporters do not retry it; the reason goes into our
    one line. The OTLP response is one protobuf message (partial success), possibly empty."""
    import requests

    class CheckedSession(requests.Session):
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            response = super().request(method, url, *args, **kwargs)
            if 200 <= response.status_code < 300:
                problem = _not_otlp(signal, response.headers.get("Content-Type", ""), response.content)
                if problem is not None:
                    _in_export.reason = f"HTTP {response.status_code} with {problem}: is this a collector?"
                    response.status_code = 400
            return response

    return CheckedSession()


def _not_otlp(signal: str, content_type: str, body: bytes) -> str | None:
    """Why `body` is not an OTLP/HTTP export response of `signal` (None if it is one)."""
    if not body:
        return None  # an empty message: everything accepted
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        import json

        try:
            return None if isinstance(json.loads(body), dict) else "a JSON body that is not an object"
        except ValueError:
            return "a body that is not JSON"
    if kind not in ("application/x-protobuf", "application/protobuf", ""):
        return f"a {kind} body"
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    message: Any = {"metrics": ExportMetricsServiceResponse, "logs": ExportLogsServiceResponse}.get(
        signal, ExportTraceServiceResponse
    )
    try:
        message.FromString(body)
    except (DecodeError, RuntimeWarning, ValueError):
        return "a body that is not an OTLP protobuf response"
    return None


def install_noise_filter() -> None:
    """Attach the filter to every exporter logger that exists (call after importing the exporters)."""
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(EXPORTER_LOGGER_PREFIXES):
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)


class ExportHealth:
    """The up/down state of each endpoint, and the one line per reported change."""

    def __init__(self, min_interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._min_interval = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._reported: dict[str, bool] = {}  # endpoint -> reported up?
        self._last_report: dict[str, float] = {}
        # endpoint -> signal -> items handed to exports that have not succeeded (failed or in flight)
        self._unsent: dict[str, dict[str, int]] = {}
        self._last_reason: dict[str, str] = {}
        self._summarized = False

    def sending(self, endpoint: str, signal: str, items: int) -> None:
        """`items` are being exported; until `sent` says otherwise, they count as not sent."""
        with self._lock:
            if self._summarized:  # after the exit summary: an export starting now was counted there
                return
            by_signal = self._unsent.setdefault(endpoint, {})
            by_signal[signal] = by_signal.get(signal, 0) + items

    def sent(self, endpoint: str, signal: str, items: int) -> None:
        with self._lock:
            by_signal = self._unsent.get(endpoint, {})
            by_signal[signal] = max(0, by_signal.get(signal, 0) - items)

    def unsent_summary(self) -> str | None:
        """One line saying what never reached which endpoint (None when everything was sent)."""
        with self._lock:
            return self._summary_locked()

    def _summary_locked(self) -> str | None:
        parts = []
        for endpoint, by_signal in self._unsent.items():
            counts = ", ".join(_count(n, sig) for sig, n in by_signal.items() if n)
            if counts:
                reason = self._last_reason.get(endpoint, "not reachable")
                parts.append(f"{counts} to {endpoint} ({reason})")
        if not parts:
            return None
        return "telemetry not sent at exit: " + "; ".join(parts)

    def warn_unsent(self, still_queued: Callable[[], Iterable[tuple[str, str, int]]] | None = None) -> None:
        """Log once, at exit, what never reached which endpoint (a short-lived app may never have
        seen a failure): the exports that did not succeed, plus the items `still_queued` says the
        batch processors hold as (endpoint, signal, count). Both are read under one lock and later
        exports are not counted, so an item taken from a queue now is not counted twice."""
        with self._lock:
            try:
                queued = list(still_queued()) if still_queued is not None else []
            except Exception:  # at exit: never raise; the failed exports are still reported
                queued = []
            for endpoint, signal, items in queued:
                if items:
                    by_signal = self._unsent.setdefault(endpoint, {})
                    by_signal[signal] = by_signal.get(signal, 0) + items
            summary = self._summary_locked()
            self._unsent.clear()
            self._summarized = True
        if summary is not None:
            _log.warning("%s", summary)

    def record(self, endpoint: str, signal: str, ok: bool, reason: str | None = None) -> None:
        """Note one export's outcome; log when it changes the reported state (rate-limited)."""
        with self._lock:
            if not ok:
                self._last_reason[endpoint] = reason or "not reachable"
            reported = self._reported.get(endpoint, True)  # nothing said yet counts as "up"
            if ok == reported:
                return
            now = self._clock()
            last = self._last_report.get(endpoint)
            if last is not None and now - last < self._min_interval:
                return
            self._reported[endpoint] = ok
            self._last_report[endpoint] = now
        if ok:
            _log.warning("telemetry export to %s is working again (%s)", endpoint, signal)
        else:
            _log.warning(
                "telemetry export to %s failed (%s): %s; retrying in the background, the app is not affected",
                endpoint,
                signal,
                reason or "not reachable",
            )


class _Watch:
    """What the three wrappers share: run a call of the inner exporter quietly and report its result."""

    def __init__(self, inner: Any, signal: str, health: ExportHealth) -> None:
        self.inner = inner
        self.signal = signal
        self.health = health
        # For display only: every OTLP exporter keeps its resolved endpoint here.
        self.endpoint = redact_url(str(getattr(inner, "_endpoint", None) or f"the {signal} OTLP endpoint"))
        self._shut_down = False

    def _quietly(self, call: Callable[[], R], failure: R) -> tuple[R, str | None]:
        _in_export.active, _in_export.reason = True, None
        try:
            return call(), _in_export.reason
        except Exception as exc:  # an exporter must never raise into the SDK's worker (it logs a traceback)
            return failure, _in_export.reason or f"{type(exc).__name__}: {exc}"
        finally:
            _in_export.active = False

    def _export(self, call: Callable[[], R], failure: R, items: int) -> R:
        self.health.sending(self.endpoint, self.signal, items)
        result, reason = self._quietly(call, failure)
        ok = getattr(result, "name", "") == "SUCCESS"
        if ok:
            self.health.sent(self.endpoint, self.signal, items)
        if not self._shut_down:  # failures caused by our own shutdown are not an endpoint state
            self.health.record(self.endpoint, self.signal, ok, reason)
        return result

    def _shutdown(self, **kwargs: Any) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        self._quietly(lambda: self.inner.shutdown(**kwargs), None)

    def _flush(self, timeout_millis: float) -> bool:
        result, _ = self._quietly(lambda: bool(self.inner.force_flush(timeout_millis)), False)
        return result


class WatchedSpanExporter(_Watch, SpanExporter):
    """A span exporter that reports to `ExportHealth` and never raises."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._export(lambda: self.inner.export(spans), SpanExportResult.FAILURE, len(spans))

    def shutdown(self) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._flush(timeout_millis)


class WatchedLogExporter(_Watch):
    """A log record exporter that reports to `ExportHealth` and never raises. No SDK base class: its
    name changed between the SDK versions we support, and the batch processor needs none."""

    def export(self, batch: Sequence[Any]) -> Any:
        return self._export(lambda: self.inner.export(batch), _LogResult.FAILURE, len(batch))

    def shutdown(self) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._flush(timeout_millis)


class WatchedMetricExporter(_Watch, MetricExporter):
    """A metric exporter that reports to `ExportHealth` and never raises; keeps the inner's temporality."""

    def __init__(self, inner: MetricExporter, signal: str, health: ExportHealth) -> None:
        _Watch.__init__(self, inner, signal, health)
        MetricExporter.__init__(
            self,
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return self._export(
            lambda: self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
            MetricExportResult.FAILURE,
            1,
        )

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown(timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._flush(timeout_millis)
