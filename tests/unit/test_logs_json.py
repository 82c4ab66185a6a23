"""JSON log lines: every contract field with and without a span and a tenant context; idempotent setup;
the OpenTelemetry logging handler in otlp mode, scrubbed, without duplicates."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from nl2sql_observability.context import UserContext, user_context
from nl2sql_observability.logs import LogSettingsError, configure_logging
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

SECRET = "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TRACER = TracerProvider().get_tracer("test")
ENV_VARS = (
    "OBSERVABILITY_EXPORTER",
    "OBSERVABILITY_LOG_FORMAT",
    "OBSERVABILITY_LOG_LEVEL",
    "OBSERVABILITY_LOG_STREAM",
    "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION",
    "NL2SQL_OBS_LOG_HANDLER_PID",
    "OTEL_SERVICE_NAME",
)


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _log_json(emit, **config) -> dict[str, object]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    configure_logging(json_format=True, level="DEBUG", stream=out, **config)
    emit(logging.getLogger("app.test"))
    (line,) = _lines(out)
    return line


def test_outside_a_span_and_without_tenant_only_the_base_fields() -> None:
    line = _log_json(lambda log: log.info("hello %s", "world"))
    assert list(line) == ["timestamp", "level", "logger", "message", "service.name"]
    assert TIMESTAMP.match(str(line["timestamp"]))
    assert line["level"] == "INFO"
    assert line["logger"] == "app.test"
    assert line["message"] == "hello world"
    assert line["service.name"] == "nl2sql"


def test_inside_a_span_the_trace_context_is_there() -> None:
    with TRACER.start_as_current_span("work") as span:
        line = _log_json(lambda log: log.warning("inside"))
    ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert line["trace_flags"] == format(int(ctx.trace_flags), "02x")
    assert list(line)[:7] == ["timestamp", "level", "logger", "message", "trace_id", "span_id", "trace_flags"]


def test_tenant_user_session_with_and_without_context() -> None:
    with user_context(UserContext(tenant_id="acme", user_id="u-1", session_id="s-9")):
        inside = _log_json(lambda log: log.info("as acme"))
    outside = _log_json(lambda log: log.info("nobody"))
    assert (inside["tenant_id"], inside["user_id"], inside["session_id"]) == ("acme", "u-1", "s-9")
    assert list(inside)[-3:] == ["tenant_id", "user_id", "session_id"]
    for key in ("tenant_id", "user_id", "session_id", "trace_id"):
        assert key not in outside
    with user_context({"tenant_id": "globex"}):
        partial = _log_json(lambda log: log.info("tenant only"))
    assert partial["tenant_id"] == "globex"
    assert "user_id" not in partial


def test_node_inside_a_node_and_span_and_tenant_together() -> None:
    from nl2sql_observability.instrumentation import node

    with user_context({"tenant_id": "acme"}), TRACER.start_as_current_span("outer"), node("generate_sql"):
        line = _log_json(lambda log: log.info("in node"))
    assert line["node"] == "generate_sql"
    assert line["tenant_id"] == "acme"
    assert "trace_id" in line
    assert "node" not in _log_json(lambda log: log.info("after"))


def test_exception_and_extra_fields_are_scrubbed() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise RuntimeError(f"auth failed with {SECRET}")
        except RuntimeError:
            log.exception(
                "call to jane@example.com failed",
                extra={
                    "dsn": "postgresql://app:hunter2@db/x",
                    "attempt": 3,
                    "nested": {"token": SECRET, "ok": [1, "a@b.io"]},
                    "level": "collides",
                    "obj": object(),
                },
            )

    line = _log_json(emit)
    text = json.dumps(line)
    assert SECRET not in text
    assert "hunter2" not in text
    assert "jane@example.com" not in text
    assert line["message"] == "call to [REDACTED:email] failed"
    assert str(line["exception"]).startswith("Traceback (most recent call last):")
    assert "RuntimeError: auth failed with [REDACTED:openai_api_key]" in str(line["exception"])
    assert line["dsn"] == "postgresql://app:[REDACTED:password]@db/x"
    assert line["attempt"] == 3
    assert line["nested"] == {"token": "[REDACTED:openai_api_key]", "ok": [1, "[REDACTED:email]"]}
    assert line["level"] == "ERROR"
    assert line["extra.level"] == "collides"
    assert str(line["obj"]).startswith("<object object")


def test_service_name_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a configured SDK (no resource to read), OTEL_SERVICE_NAME names the service.
    monkeypatch.setattr("opentelemetry.trace.get_tracer_provider", trace.NoOpTracerProvider)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-nl2sql")
    assert _log_json(lambda log: log.info("x"))["service.name"] == "billing-nl2sql"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    assert _log_json(lambda log: log.info("x"))["service.name"] == "nl2sql"


def test_configure_twice_adds_no_duplicate_handler() -> None:
    out = io.StringIO()
    configure_logging(json_format=True, stream=out)
    configure_logging(json_format=True, stream=out)
    configure_logging(json_format=True, stream=out)
    kinds = [getattr(h, "_nl2sql_obs_handler", None) for h in logging.getLogger().handlers]
    ours = [kind for kind in kinds if kind]
    assert ours.count("console") == 1
    assert len(ours) == len(set(ours)), f"duplicate handlers: {ours}"
    logging.getLogger("app").warning("once")
    assert len(_lines(out)) == 1


def test_json_only_in_otlp_mode_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setenv("OBSERVABILITY_EXPORTER", "console")
    configure_logging(stream=out)
    with TRACER.start_as_current_span("s") as span, user_context({"tenant_id": "acme"}):
        logging.getLogger("app").warning("text with %s", SECRET)
    text = out.getvalue()
    assert not text.startswith("{")
    assert f"trace_id={format(span.get_span_context().trace_id, '032x')}" in text
    assert "tenant_id=acme" in text
    assert "WARNING" in text
    assert SECRET not in text
    assert "[REDACTED:openai_api_key]" in text
    monkeypatch.setenv("OBSERVABILITY_LOG_FORMAT", "json")
    out2 = io.StringIO()
    configure_logging(stream=out2)
    logging.getLogger("app").warning("now json")
    assert _lines(out2)[0]["message"] == "now json"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OBSERVABILITY_LOG_LEVEL", "LOUD", "OBSERVABILITY_LOG_LEVEL='LOUD' is not valid; allowed: DEBUG"),
        (
            "OBSERVABILITY_LOG_FORMAT",
            "xml",
            "OBSERVABILITY_LOG_FORMAT='xml' is not valid; allowed: auto, json",
        ),
        ("OBSERVABILITY_LOG_STREAM", "file", "OBSERVABILITY_LOG_STREAM='file' is not valid"),
    ],
)
def test_bad_settings_name_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(LogSettingsError, match=re.escape(message)):
        configure_logging()


@pytest.fixture
def otel_logs(monkeypatch: pytest.MonkeyPatch) -> InMemoryLogRecordExporter:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    monkeypatch.setattr("opentelemetry._logs.get_logger_provider", lambda: provider)
    monkeypatch.setenv("OBSERVABILITY_EXPORTER", "otlp")
    return exporter


def _otel_handlers() -> list[logging.Handler]:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    return [h for h in logging.getLogger().handlers if isinstance(h, LoggingHandler)]


def test_otlp_mode_sends_scrubbed_records_through_the_otel_handler(
    otel_logs: InMemoryLogRecordExporter,
) -> None:
    out = io.StringIO()
    configure_logging(stream=out, level="INFO")
    configure_logging(stream=out, level="INFO")
    assert len(_otel_handlers()) == 1
    with TRACER.start_as_current_span("s") as span:
        logging.getLogger("app").warning("key %s", SECRET, extra={"dsn": "redis://:pw123@cache:6379"})
    (record,) = [r.log_record for r in otel_logs.get_finished_logs()]
    assert record.body == "key [REDACTED:openai_api_key]"
    assert record.attributes is not None
    assert record.attributes["dsn"] == "redis://:[REDACTED:password]@cache:6379"
    assert not any(k.startswith("otel") for k in record.attributes)
    assert record.trace_id == span.get_span_context().trace_id
    assert _lines(out)[0]["message"] == "key [REDACTED:openai_api_key]"


def test_the_sdks_own_records_go_to_the_console_but_not_back_into_otlp(
    otel_logs: InMemoryLogRecordExporter,
) -> None:
    out = io.StringIO()
    configure_logging(stream=out, level="INFO")
    logging.getLogger("opentelemetry.exporter.otlp.proto.http").warning("collector unreachable")
    logging.getLogger("app").warning("app line")
    assert [r.log_record.body for r in otel_logs.get_finished_logs()] == ["app line"]
    assert [line["message"] for line in _lines(out)] == ["collector unreachable", "app line"]


def test_no_duplicate_otel_handler_under_the_logging_instrumentor(
    otel_logs: InMemoryLogRecordExporter,
) -> None:
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    instrumentor = LoggingInstrumentor()
    # Order of opentelemetry-instrument: our configurator first, then the instrumentors.
    configure_logging(stream=io.StringIO())
    instrumentor.instrument()
    try:
        assert len(_otel_handlers()) == 1
        configure_logging(stream=io.StringIO())
        assert len(_otel_handlers()) == 1
    finally:
        instrumentor.uninstrument()


def test_an_instrumentor_handler_added_first_is_replaced(
    otel_logs: InMemoryLogRecordExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    instrumentor = LoggingInstrumentor()
    instrumentor.instrument()  # an app that instrumented before configuring
    try:
        assert len(_otel_handlers()) == 1
        configure_logging(stream=io.StringIO())
        handlers = _otel_handlers()
        assert len(handlers) == 1
        assert getattr(handlers[0], "_nl2sql_obs_handler", None) == "otlp"
        logging.getLogger("app").warning("pw %s", SECRET)
        assert [r.log_record.body for r in otel_logs.get_finished_logs()] == ["pw [REDACTED:openai_api_key]"]
    finally:
        instrumentor.uninstrument()
    assert _otel_handlers() == []


def test_user_opt_out_of_otel_log_handler_is_respected(
    otel_logs: InMemoryLogRecordExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION", "false")
    configure_logging(stream=io.StringIO())
    assert _otel_handlers() == []


def test_otlp_records_carry_the_tenant_context_as_attributes(otel_logs: InMemoryLogRecordExporter) -> None:
    configure_logging(stream=io.StringIO(), level="INFO")
    user = UserContext(tenant_id="acme", user_id="u-1", session_id="s-1")
    with user_context(user), TRACER.start_as_current_span("s"):
        logging.getLogger("app").warning("sql validation failed")
    (record,) = [r.log_record for r in otel_logs.get_finished_logs()]
    assert record.attributes is not None
    assert {k: record.attributes.get(k) for k in ("tenant_id", "user_id", "session_id")} == {
        "tenant_id": "acme",
        "user_id": "u-1",
        "session_id": "s-1",
    }
    assert record.severity_text == "WARN"


def test_log_stream_none_keeps_the_console_quiet_and_otlp_going(
    otel_logs: InMemoryLogRecordExporter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OBSERVABILITY_LOG_STREAM", "none")
    configure_logging(level="INFO")
    logging.getLogger("app").warning("only over OTLP")
    assert capsys.readouterr() == ("", "")
    assert [r.log_record.body for r in otel_logs.get_finished_logs()] == ["only over OTLP"]


def test_log_stream_file_appends_owner_only_json_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    path.write_text('{"kept": true}\n')
    path.chmod(0o600)
    monkeypatch.setenv("OBSERVABILITY_LOG_STREAM", f"file:{path}")
    configure_logging(json_format=True, level="INFO")
    logging.getLogger("app").info("to the file")
    configure_logging(json_format=True, level="INFO")  # replaces (and closes) the file handler
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"kept": True}
    assert lines[1]["message"] == "to the file"
    assert path.stat().st_mode & 0o777 == 0o600


def test_log_stream_file_in_a_missing_directory_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "no-such-dir" / "app.log"
    monkeypatch.setenv("OBSERVABILITY_LOG_STREAM", f"file:{bad}")
    with pytest.raises(LogSettingsError, match=r"OBSERVABILITY_LOG_STREAM='file:.*': cannot open the file"):
        configure_logging()
