"""The SDK configurator: Resource, TracerProvider, MeterProvider and LoggerProvider per the contract.

Loaded by `opentelemetry-instrument` through the `opentelemetry_configurator` entry point
`nl2sql_observability` (our distro makes it the selected one by defaulting
`OTEL_PYTHON_CONFIGURATOR`), or called directly by apps that do not use the launcher:

    import nl2sql_observability.configurator as otel
    otel.configure()

What it sets up:
- Resource: `service.name` (default `nl2sql`; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` win),
  `deployment.environment.name` (default `OBSERVABILITY_ENVIRONMENT`=`local`), `telemetry.distro.*`.
- Traces: `BaggageSpanProcessor` (contrib) restricted to `tenant.id`, `user.id`, `session.id`, then
  `BatchSpanProcessor(ScrubbingSpanExporter(exporter))`; sampler from `OTEL_TRACES_SAMPLER*`.
- Metrics: the contract Views (`histograms`: exponential node and request durations, the GenAI
  buckets), the trace-based exemplar filter (unless `OTEL_METRICS_EXEMPLAR_FILTER` says otherwise),
  a periodic reader.
- Logs: a global LoggerProvider (batch processor + OTLP exporter when logs go to `otlp`), then
  `nl2sql_observability.logs.configure_logging()`.
Exporters are chosen by `OBSERVABILITY_EXPORTER` (default `otlp`, see `settings`), per signal by
`OTEL_<SIGNAL>_EXPORTER` (a list, e.g. `console,otlp`). Network exporters are wrapped by
`exporthealth`: a dead collector is one log line when it goes down and one when it is back.
OTLP endpoint, headers, protocol, timeout and the batch/reader intervals come from the standard
`OTEL_*` variables, which always win; unset, in the `local` environment (the default) spans and log
records leave within 200 ms and metrics every second (`export_delays`), elsewhere the SDK's defaults
apply. Without `OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT` the export
timeout is `OBSERVABILITY_EXPORT_TIMEOUT` (5 s) so that an unreachable collector never blocks exit for long.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._configuration import _BaseConfigurator
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.environment_variables import OTEL_METRICS_EXEMPLAR_FILTER, OTEL_SDK_DISABLED
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from nl2sql_observability import __version__
from nl2sql_observability import semconv as sc
from nl2sql_observability.exporthealth import (
    ExportHealth,
    WatchedLogExporter,
    WatchedMetricExporter,
    WatchedSpanExporter,
    checked_session,
    install_noise_filter,
)
from nl2sql_observability.forksafe import ForkSafeLock
from nl2sql_observability.histograms import contract_views
from nl2sql_observability.safetext import redact_urls_in
from nl2sql_observability.service_name import warn_if_default_service_name
from nl2sql_observability.settings import (
    ConfigurationError,
    ObservabilitySettings,
    Settings,
    current_settings,
    load_all,
    load_settings,
    use_settings,
)

__all__ = [
    "Nl2sqlConfigurator",
    "Telemetry",
    "build_resource",
    "build_telemetry",
    "configure",
    "contract_views",
    "export_delays",
]

_log = logging.getLogger(__name__)
Signal = Literal["traces", "metrics", "logs"]


@dataclass
class Telemetry:
    """The providers built by the configurator. `shutdown()` flushes with bounded time."""

    resource: Resource
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    settings: ObservabilitySettings
    network_exporters: list[Any] = field(default_factory=list)
    batch_processors: list[Any] = field(default_factory=list)
    health: ExportHealth | None = None
    # (batch processor, the watched network exporter it feeds): what is still queued at exit counts as unsent
    queued_exports: list[tuple[Any, Any]] = field(default_factory=list)
    _shut_down: bool = False

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and shut down the three providers in parallel, waiting at most `timeout_s`
        (default `OBSERVABILITY_SHUTDOWN_TIMEOUT`). Past the deadline the network exporters are shut
        down so their retry loops stop, and whatever is left is dropped. Never raises.
        Returns True when everything finished in time.

        When no thread can be started (atexit on CPython 3.12.0-3.12.2, gh-113964: "can't create new
        thread at interpreter shutdown") the same budget is spent in this thread, one part after another."""
        if self._shut_down:
            return True
        self._shut_down = True
        budget = self.settings.shutdown_timeout if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget
        threads: list[threading.Thread] = []
        try:
            for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
                thread = threading.Thread(
                    target=_quiet_shutdown, args=(provider,), name="nl2sql-otel-shutdown", daemon=True
                )
                thread.start()
                threads.append(thread)
        except RuntimeError:
            done = self._shutdown_in_this_thread(deadline)
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            done = done and all(not t.is_alive() for t in threads)
        else:
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            done = all(not t.is_alive() for t in threads)
        if not done:
            for exporter in self.network_exporters:  # abort retry/backoff loops of a dead endpoint
                _quiet_shutdown(exporter)
            _log.debug("telemetry shutdown exceeded %.1fs; unsent telemetry dropped", budget)
        if self.health is not None:
            self.health.warn_unsent(self._still_queued)  # once: what never reached the collector
        return done

    def _still_queued(self) -> list[tuple[str, str, int]]:
        """(endpoint, signal, count) of the items each batch processor never handed to its exporter
        (the deadline came first): the exit summary names them as well as the failed exports."""
        left = []
        for processor, exporter in self.queued_exports:
            queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
            try:
                items = len(queue) if queue is not None else 0
            except Exception:  # an SDK without that queue: nothing to add
                items = 0
            left.append((exporter.endpoint, exporter.signal, items))
        return left

    def _shutdown_in_this_thread(self, deadline: float) -> bool:
        """Sequential shutdown within `deadline`: each batch processor's worker thread (started long
        ago) gets the remaining time to send what is queued; past it, its exporter is shut down, which
        ends a retry loop. Then the providers, whose processors and readers are by then stopped."""

        def remaining_ms() -> float:
            return max(0.0, deadline - time.monotonic()) * 1000

        for processor in self.batch_processors:
            # The SDK's BatchSpanProcessor/BatchLogRecordProcessor.shutdown() takes no timeout (30 s);
            # the batch processor they share does. Fall back to the public call when it is not there.
            inner = getattr(processor, "_batch_processor", None)
            try:
                if inner is not None and hasattr(inner, "shutdown"):
                    inner.shutdown(timeout_millis=remaining_ms())
                else:
                    processor.shutdown()
            except Exception:  # never raise at exit
                _log.debug("telemetry shutdown failed", exc_info=True)
        try:
            self.meter_provider.shutdown(timeout_millis=remaining_ms())
        except Exception:  # e.g. the deadline passed before a reader got its turn
            _log.debug("metrics shutdown incomplete", exc_info=True)
        _quiet_shutdown(self.tracer_provider)
        _quiet_shutdown(self.logger_provider)
        return time.monotonic() < deadline


def _quiet_shutdown(obj: Any) -> None:
    try:
        obj.shutdown()
    except Exception:  # pragma: no cover - never raise at exit
        _log.debug("telemetry shutdown failed", exc_info=True)


def build_resource(settings: ObservabilitySettings) -> Resource:
    """Contract resource; `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` override our defaults."""
    defaults = Resource(
        {
            sc.SERVICE_NAME: sc.DEFAULT_SERVICE_NAME,
            sc.DEPLOYMENT_ENVIRONMENT_NAME: settings.environment,
            sc.TELEMETRY_DISTRO_NAME: sc.DISTRO_NAME,
            sc.TELEMETRY_DISTRO_VERSION: __version__,
        }
    )
    # Resource.create() adds SDK attributes and the OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME
    # detector values; it defaults service.name to "unknown_service" when neither is set.
    from_env = Resource.create()
    attrs = dict(from_env.attributes)
    if not os.environ.get("OTEL_SERVICE_NAME", "").strip() and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attrs.pop(sc.SERVICE_NAME, None)
    return defaults.merge(Resource(attrs, from_env.schema_url))


def _timeout_for(signal: Signal, settings: ObservabilitySettings) -> float | None:
    """None lets the exporter read OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT; else our bounded default."""
    if os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TIMEOUT"
    ):
        return None
    return settings.export_timeout


# The OTLP exporter of each signal: opentelemetry.exporter.otlp.proto.{grpc|http}.<module>.<class>,
# imported only when that one is used.
_OTLP_EXPORTERS: dict[Signal, tuple[str, str]] = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
    "logs": ("_log_exporter", "OTLPLogExporter"),
}
_OTLP_PACKAGES = {"grpc": "grpc", "http/protobuf": "http"}


def _otlp_exporter(signal: Signal, settings: ObservabilitySettings, health: ExportHealth) -> Any:
    """The OTLP exporter of `signal` for its protocol, with our bounded timeout unless OTEL_* sets one,
    wrapped so that a dead endpoint is one log line per change of state."""
    module_name, class_name = _OTLP_EXPORTERS[signal]
    package = _OTLP_PACKAGES[settings.protocol_for(signal)]
    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{package}.{module_name}")
    extra = {"session": checked_session(signal)} if package == "http" else {}
    exporter = getattr(module, class_name)(timeout=_timeout_for(signal, settings), **extra)
    install_noise_filter()
    return _WATCHED[signal](exporter, signal, health)


_WATCHED: dict[Signal, type[Any]] = {
    "traces": WatchedSpanExporter,
    "metrics": WatchedMetricExporter,
    "logs": WatchedLogExporter,
}


# Export delays in the local environment (`deployment.environment.name=local`, the default): a span
# or log line leaves the process within 200 ms and a metric within 1 s, so a developer finds them in
# Jaeger/VictoriaLogs within about a second and in Prometheus within two (the collector adds its own
# batch timeout, 200 ms). The SDK's defaults (5 s, 1 s, 60 s) stay for every other environment, and an
# explicit OTEL_* variable always wins. A full batch (512 spans or log records) leaves at once either way.
LOCAL_ENVIRONMENT = sc.DEFAULT_ENVIRONMENT
LOCAL_SPAN_DELAY_MS = 200
LOCAL_LOG_DELAY_MS = 200
LOCAL_METRIC_INTERVAL_MS = 1000


@dataclass(frozen=True)
class ExportDelays:
    """Batch delays and the metric export interval we pass to the SDK; None: the SDK decides (its
    default, or the OTEL_* variable the user set)."""

    span_delay_ms: int | None = None
    log_delay_ms: int | None = None
    metric_interval_ms: int | None = None


def export_delays(settings: ObservabilitySettings, environ: Mapping[str, str] | None = None) -> ExportDelays:
    """Our derived defaults for `settings.environment`: short ones in `local`, the SDK's elsewhere;
    never where the user set `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BLRP_SCHEDULE_DELAY` or
    `OTEL_METRIC_EXPORT_INTERVAL` (an empty value counts as unset)."""
    env = os.environ if environ is None else environ
    if settings.environment != LOCAL_ENVIRONMENT:
        return ExportDelays()

    def unless_set(name: str, value: int) -> int | None:
        return None if env.get(name, "").strip() else value

    return ExportDelays(
        span_delay_ms=unless_set("OTEL_BSP_SCHEDULE_DELAY", LOCAL_SPAN_DELAY_MS),
        log_delay_ms=unless_set("OTEL_BLRP_SCHEDULE_DELAY", LOCAL_LOG_DELAY_MS),
        metric_interval_ms=unless_set("OTEL_METRIC_EXPORT_INTERVAL", LOCAL_METRIC_INTERVAL_MS),
    )


def _one_line_json(span: Any) -> str:
    return str(span.to_json(indent=None)) + os.linesep


def _one_line_metrics(data: Any) -> str:
    return str(data.to_json(indent=None)) + os.linesep


def _allowed_baggage_key(key: str) -> bool:
    return key in sc.BAGGAGE_ALLOW_LIST


def build_telemetry(
    settings: ObservabilitySettings | None = None,
    *,
    extra_span_processors: Sequence[SpanProcessor] = (),
    extra_metric_readers: Sequence[MetricReader] = (),
    shutdown_on_exit: bool = True,
    health: ExportHealth | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    extra_log_processors: Sequence[Any] = (),
) -> Telemetry:
    """Build (without installing globally) the providers for `settings`.

    `extra_*` add e.g. in-memory exporters/readers for tests; they are not scrubbed."""
    from opentelemetry.processor.baggage import BaggageSpanProcessor

    from nl2sql_observability.scrubbing import ScrubbingSpanExporter

    settings = settings or load_settings()
    health = health or ExportHealth()
    resource = build_resource(settings)
    if resource_attributes:  # e.g. the rated service of a feedback (feedback.py)
        resource = resource.merge(Resource(dict(resource_attributes)))
    timeout_ms = int(settings.export_timeout * 1000)
    delays = export_delays(settings)
    network: list[Any] = []
    batch: list[Any] = []
    queued: list[tuple[Any, Any]] = []

    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=shutdown_on_exit)
    tracer_provider.add_span_processor(BaggageSpanProcessor(_allowed_baggage_key))
    for name in settings.exporters_for("traces"):
        if name == "otlp":
            network.append(_otlp_exporter("traces", settings, health))
            exporter: SpanExporter = network[-1]
        else:
            exporter = ConsoleSpanExporter(out=sys.stdout, formatter=_one_line_json)
        # Scrub before any exporter sees the spans.
        batch.append(
            BatchSpanProcessor(
                ScrubbingSpanExporter(exporter),
                export_timeout_millis=timeout_ms,
                schedule_delay_millis=delays.span_delay_ms,
            )
        )
        tracer_provider.add_span_processor(batch[-1])
        if name == "otlp":
            queued.append((batch[-1], network[-1]))
    for processor in extra_span_processors:
        tracer_provider.add_span_processor(processor)

    readers: list[MetricReader] = []
    for name in settings.exporters_for("metrics"):
        if name == "otlp":
            network.append(_otlp_exporter("metrics", settings, health))
            readers.append(
                PeriodicExportingMetricReader(
                    network[-1],
                    export_timeout_millis=timeout_ms,
                    export_interval_millis=delays.metric_interval_ms,
                )
            )
        else:
            console = ConsoleMetricExporter(out=sys.stdout, formatter=_one_line_metrics)
            readers.append(PeriodicExportingMetricReader(console))
    readers.extend(extra_metric_readers)
    exemplar_filter = None if os.environ.get(OTEL_METRICS_EXEMPLAR_FILTER) else TraceBasedExemplarFilter()
    meter_provider = MeterProvider(
        metric_readers=readers,
        resource=resource,
        views=contract_views(),
        exemplar_filter=exemplar_filter,
        shutdown_on_exit=shutdown_on_exit,
    )

    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=shutdown_on_exit)
    if "otlp" in settings.exporters_for("logs"):
        network.append(_otlp_exporter("logs", settings, health))
        batch.append(
            BatchLogRecordProcessor(
                network[-1], export_timeout_millis=timeout_ms, schedule_delay_millis=delays.log_delay_ms
            )
        )
        logger_provider.add_log_record_processor(batch[-1])
        queued.append((batch[-1], network[-1]))
    for log_processor in extra_log_processors:
        logger_provider.add_log_record_processor(log_processor)
    # console: log lines go to stdout through the logging configuration, not via an exporter.
    return Telemetry(
        resource,
        tracer_provider,
        meter_provider,
        logger_provider,
        settings,
        network,
        batch,
        health,
        queued_exports=queued,
    )


_configured: Telemetry | None = None
_lock = ForkSafeLock()


def configure(
    settings: ObservabilitySettings | None = None,
    *,
    extra_span_processors: Sequence[SpanProcessor] = (),
    extra_metric_readers: Sequence[MetricReader] = (),
    setup_logging: bool = True,
) -> Telemetry | None:
    """Build the providers, install them globally, configure logging. Idempotent: a second call
    returns the first result. Returns None when `OTEL_SDK_DISABLED=true`.

    Without `settings`, every setting is read once (`settings.load_all`, unless the distro did it
    already) and kept for logging, the scrubber, the audit log, the price table and the instrumentor.

    Raises `ConfigurationError` (one message: variable, value, allowed values) on a bad setting."""
    global _configured
    with _lock:
        if _configured is not None:
            return _configured
        if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
            return None
        if settings is None:
            settings = _startup_settings().exporter
        telemetry = build_telemetry(
            settings,
            extra_span_processors=extra_span_processors,
            extra_metric_readers=extra_metric_readers,
            shutdown_on_exit=False,  # our bounded, parallel shutdown instead of three sequential ones
        )
        atexit.register(telemetry.shutdown)
        from nl2sql_observability.audit.writer import drain_all, install_sigterm_drain

        # atexit runs last-registered first: the audit queue is written before the final export, so
        # nl2sql.audit.events reports it.
        atexit.register(drain_all)
        install_sigterm_drain()
        trace.set_tracer_provider(telemetry.tracer_provider)
        metrics.set_meter_provider(telemetry.meter_provider)
        set_logger_provider(telemetry.logger_provider)
        _configured = telemetry
    if setup_logging:
        try:
            from nl2sql_observability.logs import configure_logging

            configure_logging(exporter_settings=settings)  # logging's own section was handed over
        except Exception:  # pragma: no cover - logging setup must not stop the app
            _log.warning("nl2sql_observability: logging setup failed", exc_info=True)
    warn_if_default_service_name(telemetry.resource)
    return telemetry


def _startup_settings() -> Settings:
    """The settings tree: the one the distro loaded and handed out (not validated twice), else every
    setting read now and handed to its owner."""
    tree = current_settings()
    if tree is None:
        tree = load_all()
        use_settings(tree)
    return tree


class Nl2sqlConfigurator(_BaseConfigurator):
    """`opentelemetry_configurator` entry point `nl2sql_observability`: calls `configure()`.

    A bad setting stops start-up with one message on stderr and exit status 2 (the launcher would
    otherwise log a traceback and run the app without telemetry)."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            configure()
        except ConfigurationError as exc:
            fail_startup(exc)


def fail_startup(exc: ConfigurationError) -> NoReturn:
    """Print the configuration error and stop the process with status 2.

    This runs inside `sitecustomize`, before the app: the launcher swallows exceptions there and a
    `SystemExit` becomes "Fatal Python error: init_import_site" with a traceback, so `os._exit` is
    the only way to stop with just the one message. Nothing of the app has run yet."""
    sys.stderr.write(f"nl2sql-observability: {redact_urls_in(str(exc))}\n")
    sys.stderr.flush()
    os._exit(2)
