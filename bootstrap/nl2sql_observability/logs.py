"""Logging setup: JSON lines with trace and tenant context (python-json-logger), or readable text.

`configure_logging()` is called once by the configurator after the providers exist; apps may call it
again. Every call replaces the handlers this module installed (tagged), so there are never
duplicates. In `otlp` mode records also go to the global LoggerProvider through the OpenTelemetry
logging handler of `opentelemetry-instrumentation-logging` (subclassed to scrub body and attributes).

JSON keys (the telemetry contract): timestamp, level, logger, message, trace_id, span_id, trace_flags
(only inside a span), service.name, tenant_id, user_id, session_id, node (when known), exception
(when there is one), then `extra=` fields. Every string is scrubbed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import IO, Any

from opentelemetry.trace import get_current_span
from pythonjsonlogger.json import JsonFormatter

from nl2sql_observability import context as _tenant
from nl2sql_observability.exporter_settings import ObservabilitySettings, load_settings
from nl2sql_observability.log_settings import (
    ConsoleHandler,
    LogSettings,
    LogSettingsError,
    load_log_settings,
    open_log_file,
    parse_level,
)
from nl2sql_observability.scrubbing import scrub_capped, scrub_value_capped

__all__ = [
    "ContextJsonFormatter",
    "ContextTextFormatter",
    "LogSettingsError",
    "configure_logging",
    "context_fields",
]

# opentelemetry-instrumentation-logging's switch for attaching its own (unscrubbed) handler.
ENV_OTEL_LOG_AUTO = "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION"
_ENV_OTEL_LOG_AUTO_OWNER = "NL2SQL_OBS_LOG_HANDLER_PID"

_TAG = "_nl2sql_obs_handler"

# Attributes of a LogRecord that are not `extra=` fields.
_RESERVED = frozenset(
    vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
    # injected by opentelemetry-instrumentation-logging's record factory; we carry the real ids.
    | {"otelSpanID", "otelTraceID", "otelTraceSampled", "otelServiceName"}
)
_CONTRACT_KEYS = (
    "timestamp",
    "level",
    "logger",
    "message",
    "trace_id",
    "span_id",
    "trace_flags",
    "service.name",
    "tenant_id",
    "user_id",
    "session_id",
    "node",
    "exception",
    "stack",
)


def _service_name() -> str:
    from opentelemetry.trace import get_tracer_provider

    resource = getattr(get_tracer_provider(), "resource", None)
    name = resource.attributes.get("service.name") if resource is not None else None
    if isinstance(name, str) and name and not name.startswith("unknown_service"):
        return name
    return os.environ.get("OTEL_SERVICE_NAME") or "nl2sql"


def _trace_fields(fields: dict[str, Any]) -> None:
    ctx = get_current_span().get_span_context()
    if ctx.is_valid:
        fields["trace_id"] = format(ctx.trace_id, "032x")
        fields["span_id"] = format(ctx.span_id, "016x")
        fields["trace_flags"] = format(int(ctx.trace_flags), "02x")


def _tenant_fields(fields: dict[str, Any]) -> None:
    try:
        user = _tenant.current_user_context()
        node = _tenant.current_node()
    except Exception:  # the context module must never break a log call
        return
    if user is not None:
        for key in ("tenant_id", "user_id", "session_id"):
            value = getattr(user, key, None)
            if value:
                fields[key] = str(value)
    if node:
        fields["node"] = str(node)


def context_fields() -> dict[str, str]:
    """trace/span ids of the active span (none outside a span) and the tenant context, if any."""
    fields: dict[str, str] = {}
    _trace_fields(fields)
    _tenant_fields(fields)
    return fields


_second_cache: tuple[int, str] = (-1, "")


def _rfc3339_ms(created: float) -> str:
    global _second_cache
    second = int(created)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return f"{prefix}.{int((created - second) * 1000):03d}Z"


class ContextJsonFormatter(JsonFormatter):
    """python-json-logger formatter emitting exactly the contract keys, scrubbed."""

    def __init__(self, *, service_name: str | None = None) -> None:
        super().__init__(reserved_attrs=list(_RESERVED))
        self._service_name = service_name

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        scrub = scrub_capped  # scrubbed, then cut: a huge message costs bounded time
        log_data["timestamp"] = _rfc3339_ms(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = scrub(record.message)
        _trace_fields(log_data)
        if self._service_name is None:
            self._service_name = _service_name()
        log_data["service.name"] = self._service_name
        _tenant_fields(log_data)
        exc = message_dict.pop("exc_info", None)
        if exc:
            log_data["exception"] = scrub(exc)
        stack = message_dict.pop("stack_info", None)
        if stack:
            log_data["stack"] = scrub(stack)
        attrs = record.__dict__
        if not message_dict and not (attrs.keys() - _RESERVED):
            return  # no extra= fields: the common case
        extras: dict[str, Any] = dict(message_dict)  # logger.info({"k": v}) puts the dict here
        for key, value in attrs.items():
            if key not in _RESERVED and not key.startswith("_"):
                extras[key] = value
        for key, value in extras.items():
            out_key = f"extra.{key}" if key in _CONTRACT_KEYS else key
            log_data[out_key] = scrub_value_capped(value)

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        try:
            return super().jsonify_log_record(log_data)
        except Exception:  # a broken extra (e.g. circular) must not lose the line
            safe = {
                k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
                for k, v in log_data.items()
            }
            return super().jsonify_log_record(safe)


class ContextTextFormatter(logging.Formatter):
    """Readable text: `time LEVEL logger [trace_id=… span_id=… tenant_id=… node=…] message`, scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(name)s%(context)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _rfc3339_ms(record.created)

    def format(self, record: logging.LogRecord) -> str:
        fields = context_fields()
        fields.pop("trace_flags", None)
        record.__dict__["context"] = (
            (" [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]") if fields else ""
        )
        try:
            return scrub_capped(super().format(record))
        finally:
            del record.__dict__["context"]


def _scrubbing_otel_handler_class() -> type[logging.Handler] | None:
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:  # pragma: no cover - it is a dependency
        return None

    class ScrubbingLoggingHandler(LoggingHandler):
        """The instrumentation-logging handler, with body and attributes scrubbed before export."""

        def _translate(self, record: logging.LogRecord) -> Any:
            log_record = super()._translate(record)
            context: dict[str, Any] = {}
            _tenant_fields(context)  # tenant_id, user_id, session_id, node: searchable in the log store
            if context:
                log_record.attributes = {**context, **(log_record.attributes or {})}
            log_record.body = scrub_value_capped(log_record.body)
            if log_record.attributes:
                log_record.attributes = {
                    k: scrub_value_capped(v) for k, v in log_record.attributes.items() if k not in _RESERVED
                }
            return log_record

        def flush(self) -> None:
            # The parent starts a thread to force-flush the provider. In logging.shutdown() at exit
            # on CPython 3.12.0-3.12.2 (gh-113964) no thread can start; the configurator's exit
            # shutdown has flushed the provider by then.
            with contextlib.suppress(RuntimeError):
                super().flush()

    return ScrubbingLoggingHandler


_OTEL_HANDLER_CLASS: type[logging.Handler] | None = None


def _otel_handler_class() -> type[logging.Handler] | None:
    global _OTEL_HANDLER_CLASS
    if _OTEL_HANDLER_CLASS is None:
        _OTEL_HANDLER_CLASS = _scrubbing_otel_handler_class()
    return _OTEL_HANDLER_CLASS


def _not_from_the_telemetry_pipeline(record: logging.LogRecord) -> bool:
    """Keep the SDK's and exporters' own records (e.g. "collector unreachable") out of the OTLP
    handler: exporting them through the pipeline they report on loops back into the SDK. They
    still reach the console handler. Our own export-health lines likewise."""
    return not record.name.startswith(("opentelemetry", "nl2sql_observability.export"))


def _foreign_otel_handlers(root: logging.Logger) -> list[logging.Handler]:
    """OTel log handlers on the root logger that are not ours (the instrumentor's, the SDK's)."""
    classes: list[type] = []
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler as InstrHandler

        classes.append(InstrHandler)
    except ImportError:  # pragma: no cover
        pass
    try:
        from opentelemetry.sdk._logs import LoggingHandler as SdkHandler

        classes.append(SdkHandler)
    except ImportError:  # pragma: no cover
        pass
    return [h for h in root.handlers if isinstance(h, tuple(classes)) and not getattr(h, _TAG, None)]


def _resolve_json(json_format: bool | None, log: LogSettings, exporter: ObservabilitySettings) -> bool:
    if json_format is not None:
        return json_format
    if log.format == "auto":
        return exporter.exporter == "otlp"
    return log.format == "json"


def _resolve_level(level: int | str | None, log: LogSettings) -> int:
    if level is None:
        return log.level_number
    if isinstance(level, int):
        return level
    return int(logging.getLevelName(parse_level(level, "level")))


def _resolve_stream(stream: IO[str] | None, log: LogSettings) -> logging.Handler | None:
    """The console handler: stdout, stderr, `none` (no console lines: OTLP only) or `file:PATH`
    (appended to, created owner-only)."""
    if stream is not None:
        return ConsoleHandler(stream)
    if log.stream in ("stdout", "stderr"):
        return ConsoleHandler(sys.stdout if log.stream == "stdout" else sys.stderr)
    if log.stream == "none":
        return None
    return open_log_file(log.stream)


def _claim_otel_log_handler() -> bool:
    """Stop opentelemetry-instrumentation-logging from attaching a second, unscrubbed handler.

    Under `opentelemetry-instrument` our configurator runs before the instrumentors, and the logging
    instrumentor then adds its own LoggingHandler unless OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false.
    We set it (remembering that we did, by pid, so child processes start fresh). Returns False when
    the user set it to false themselves: then no OTel log handler is wanted at all.
    """
    value = os.environ.get(ENV_OTEL_LOG_AUTO)
    ours = os.environ.get(_ENV_OTEL_LOG_AUTO_OWNER)
    if value is not None and value.strip().lower() == "false" and ours is None:
        return False
    os.environ[ENV_OTEL_LOG_AUTO] = "false"
    os.environ[_ENV_OTEL_LOG_AUTO_OWNER] = str(os.getpid())
    return True


_pushed: tuple[LogSettings, ObservabilitySettings] | None = None


def use_log_settings(settings: LogSettings | None, exporter_settings: ObservabilitySettings | None) -> None:
    """The settings `configure_logging()` uses from now on (`settings.use_settings` hands them over);
    None: it reads the environment."""
    global _pushed
    _pushed = (
        (settings, exporter_settings) if settings is not None and exporter_settings is not None else None
    )


def configure_logging(
    *,
    json_format: bool | None = None,
    level: int | str | None = None,
    stream: IO[str] | None = None,
    settings: LogSettings | None = None,
    exporter_settings: ObservabilitySettings | None = None,
) -> None:
    """Configure the root logger; idempotent. `json_format=None` means: JSON when OBSERVABILITY_EXPORTER=otlp
    (`OBSERVABILITY_LOG_FORMAT=json|text` overrides). `level=None`: `OBSERVABILITY_LOG_LEVEL` (INFO).
    The settings are the ones given, else the ones handed over at start-up (`use_log_settings`), else
    read from the environment here. Raises `LogSettingsError` (naming the variable, value and choices)
    for a bad setting."""
    pushed = _pushed
    log = settings if settings is not None else pushed[0] if pushed is not None else load_log_settings()
    exporter = (
        exporter_settings
        if exporter_settings is not None
        else pushed[1]
        if pushed is not None
        else load_settings()
    )
    use_json = _resolve_json(json_format, log, exporter)
    resolved_level = _resolve_level(level, log)
    out = _resolve_stream(stream, log)
    otlp = "otlp" in exporter.exporters_for("logs")

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _TAG, None)]:
        root.removeHandler(handler)
        if getattr(handler, _TAG) == "console":
            handler.close()

    if out is not None:
        out.setFormatter(ContextJsonFormatter() if use_json else ContextTextFormatter())
        setattr(out, _TAG, "console")
        root.addHandler(out)

    if otlp and _claim_otel_log_handler():
        handler_class = _otel_handler_class()
        if handler_class is not None:
            from opentelemetry._logs import get_logger_provider

            foreign = _foreign_otel_handlers(root)
            for handler in foreign:
                root.removeHandler(handler)
            otel_handler = handler_class(logger_provider=get_logger_provider())  # type: ignore[call-arg]
            setattr(otel_handler, _TAG, "otlp")
            otel_handler.addFilter(_not_from_the_telemetry_pipeline)
            root.addHandler(otel_handler)
            try:  # let LoggingInstrumentor().uninstrument() remove ours instead of the one it made
                from opentelemetry.instrumentation.logging import LoggingInstrumentor

                if LoggingInstrumentor._logging_handler in foreign:
                    LoggingInstrumentor._logging_handler = otel_handler  # type: ignore[assignment]
            except ImportError:  # pragma: no cover
                pass

    root.setLevel(resolved_level)
