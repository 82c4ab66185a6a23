"""Settings and configurator: defaults, OTEL_* precedence, bad values, resource, exporters, views."""

from __future__ import annotations

import threading

import pytest
from nl2sql_observability import __version__
from nl2sql_observability.configurator import build_resource, build_telemetry, contract_views
from nl2sql_observability.settings import ConfigurationError, load_settings
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import SpanProcessor


def test_defaults():
    s = load_settings({})
    assert s.exporter == "otlp"
    assert s.environment == "local"
    assert s.otlp_protocol == "http/protobuf"
    assert s.export_timeout == 5.0
    assert s.shutdown_timeout == 1.5
    assert [s.exporters_for(x) for x in ("traces", "metrics", "logs")] == [("otlp",)] * 3


def test_values_are_normalised_and_empty_means_unset():
    s = load_settings({"OBSERVABILITY_EXPORTER": " Console ", "OTEL_EXPORTER_OTLP_PROTOCOL": ""})
    assert s.exporter == "console"
    assert s.otlp_protocol == "http/protobuf"


def test_otel_variables_win_per_signal():
    s = load_settings(
        {
            "OBSERVABILITY_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        }
    )
    assert s.exporters_for("traces") == ("console",)
    assert s.exporters_for("metrics") == ("otlp",)
    assert s.exporters_for("logs") == ()
    assert s.protocol_for("traces") == "grpc"
    assert s.protocol_for("metrics") == "http/protobuf"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"OBSERVABILITY_EXPORTER": "otlpp"},
            "OBSERVABILITY_EXPORTER='otlpp' is not allowed; allowed values: otlp, console, none",
        ),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not allowed; allowed values: grpc, http/protobuf",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='udp' is not allowed; allowed values: grpc, http/protobuf",
        ),
        (
            {"OTEL_METRICS_EXPORTER": "prometheus"},
            "OTEL_METRICS_EXPORTER='prometheus' is not allowed; allowed values: otlp, console, none",
        ),
        ({"OBSERVABILITY_EXPORT_TIMEOUT": "-1"}, "OBSERVABILITY_EXPORT_TIMEOUT='-1' is not allowed"),
        # `none` only alone, no empty item
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, "OTEL_TRACES_EXPORTER='none,otlp' is not allowed"),
        ({"OTEL_LOGS_EXPORTER": "console,"}, "OTEL_LOGS_EXPORTER='console,' is not allowed"),
        ({"OTEL_TRACES_EXPORTER": "console,zipkin"}, "OTEL_TRACES_EXPORTER='console,zipkin' is not allowed"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "not-a-url"},
            "OTEL_EXPORTER_OTLP_ENDPOINT='not-a-url' is not allowed",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:99999/v1/traces"},
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='http://localhost:99999/v1/traces' is not allowed",
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://collector:4318"},
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT='ftp://collector:4318' is not allowed",
        ),
        # host:port is the gRPC exporter's form only; the http exporter needs a URL
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector"},
            "OTEL_EXPORTER_OTLP_ENDPOINT='collector' is not allowed",
        ),
    ],
)
def test_bad_values_give_one_clear_message(env, expected):
    with pytest.raises(ConfigurationError) as info:
        load_settings(env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "pydantic" not in message.lower()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("console,otlp", ("console", "otlp")),
        (" OTLP , console ", ("otlp", "console")),
        ("otlp,otlp", ("otlp",)),
        ("none", ()),
    ],
)
def test_exporter_variables_are_lists(value, expected):
    s = load_settings({"OTEL_TRACES_EXPORTER": value, "OTEL_METRICS_EXPORTER": value})
    assert s.exporters_for("traces") == expected
    assert s.exporters_for("metrics") == expected


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com:443/otlp"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
        {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "[::1]:4317"},
    ],
)
def test_good_endpoints_are_accepted(env):
    load_settings(env)


def test_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("OBSERVABILITY_EXPORTER", "nonsense")
    with pytest.raises(ConfigurationError, match="OBSERVABILITY_EXPORTER='nonsense'"):
        load_settings()
    monkeypatch.setenv("OBSERVABILITY_EXPORTER", "NONE")
    assert load_settings().exporter == "none"


def test_resource_defaults(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    attrs = build_resource(load_settings({})).attributes
    assert attrs["service.name"] == "nl2sql"
    assert attrs["deployment.environment.name"] == "local"
    assert attrs["telemetry.distro.name"] == "nl2sql-observability"
    assert attrs["telemetry.distro.version"] == __version__


def test_resource_otel_variables_win(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-nl2sql")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=data")
    attrs = build_resource(load_settings({"OBSERVABILITY_ENVIRONMENT": "staging"})).attributes
    assert attrs["service.name"] == "billing-nl2sql"
    assert attrs["deployment.environment.name"] == "prod"
    assert attrs["team"] == "data"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")
    assert build_resource(load_settings({})).attributes["service.name"] == "from-attrs"


def test_exporters_follow_protocol_and_timeouts(monkeypatch):
    for var in ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    t = build_telemetry(
        load_settings({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_LOGS_EXPORTER": "none"}),
        shutdown_on_exit=False,
    )
    try:
        kinds = [type(e.inner) for e in t.network_exporters]
        assert kinds == [GrpcSpanExporter, HttpMetricExporter]
    finally:
        assert t.shutdown(timeout_s=5)
    t = build_telemetry(load_settings({"OBSERVABILITY_EXPORTER": "none"}), shutdown_on_exit=False)
    assert t.network_exporters == []
    t.shutdown(timeout_s=5)
    t = build_telemetry(load_settings({}), shutdown_on_exit=False)
    assert isinstance(t.network_exporters[0].inner, HttpSpanExporter)
    t.shutdown(timeout_s=5)


def test_views_cover_every_contract_histogram():
    names = {v._instrument_name for v in contract_views()}
    assert names == {
        "nl2sql.node.duration",
        "nl2sql.request.duration",
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
    }


class _StuckProcessor(SpanProcessor):
    """A span processor whose shutdown never returns until released: a backend that hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def shutdown(self) -> None:
        self.release.wait()


def test_shutdown_gives_up_on_a_hung_exporter():
    stuck = _StuckProcessor()
    t = build_telemetry(load_settings({}), extra_span_processors=[stuck], shutdown_on_exit=False)
    result: list[bool] = []
    caller = threading.Thread(target=lambda: result.append(t.shutdown(timeout_s=0.2)), daemon=True)
    try:
        caller.start()
        # Unbounded, this would wait forever; the generous join only keeps a regression from hanging CI.
        caller.join(timeout=60)
        assert not caller.is_alive(), "Telemetry.shutdown() blocked on a hung exporter"
        assert result == [False]
    finally:
        stuck.release.set()


def test_default_service_name_gets_one_hint_and_a_named_one_none(monkeypatch, capsys):
    from nl2sql_observability.service_name import default_service_name_hint, warn_if_default_service_name
    from opentelemetry.sdk.resources import Resource

    default = Resource({"service.name": "nl2sql"})
    hint = default_service_name_hint(default, {})
    assert hint is not None
    assert "OTEL_SERVICE_NAME=" in hint
    assert default_service_name_hint(default, {"OTEL_SERVICE_NAME": "nl2sql"}) is None  # named on purpose
    assert default_service_name_hint(default, {"OTEL_RESOURCE_ATTRIBUTES": "service.name=nl2sql"}) is None
    assert default_service_name_hint(Resource({"service.name": "billing-sql"}), {}) is None
    for var in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(var, raising=False)
    warn_if_default_service_name(default)
    assert capsys.readouterr().err == f"nl2sql-observability: {hint}\n"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-sql")
    warn_if_default_service_name(default)
    assert capsys.readouterr().err == ""


def test_an_app_started_under_the_default_name_gets_exactly_one_hint(tmp_path):
    """The real launcher: one stderr line for an unnamed app, none for a named one."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    app = tmp_path / "app.py"
    app.write_text("print('ok')\n")
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    base.update(OBSERVABILITY_EXPORTER="none", XDG_DATA_HOME=str(tmp_path))
    for extra, hints in (({}, 1), ({"OTEL_SERVICE_NAME": "billing-sql"}, 0)):
        proc = subprocess.run(
            [str(launcher), sys.executable, str(app)],
            env={**base, **extra}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith("ok")
        assert proc.stderr.count("OTEL_SERVICE_NAME=") == hints
