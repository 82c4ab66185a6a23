"""The entry points load under `opentelemetry-instrument` (subprocesses, console exporter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
INSTRUMENT = BIN / "opentelemetry-instrument"
NL2SQL_OBS = BIN / "nl2sql-obs"

pytestmark = pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument not installed")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "OBSERVABILITY_")) and k != "PYTHONPATH"
    }
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        OBSERVABILITY_AUDIT_PATH=str(tmp_path / "audit" / "events.log"),
        OTEL_METRIC_EXPORT_INTERVAL="600000",
    )
    env.update(extra)
    return env


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_entry_points_are_registered_with_unique_names():
    distros = {ep.name: ep.value for ep in entry_points(group="opentelemetry_distro")}
    configurators = {ep.name: ep.value for ep in entry_points(group="opentelemetry_configurator")}
    assert distros["nl2sql_observability"] == "nl2sql_observability.distro:Nl2sqlDistro"
    assert configurators["nl2sql_observability"] == "nl2sql_observability.configurator:Nl2sqlConfigurator"


def test_opentelemetry_instrument_demo_console(tmp_path):
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            str(INSTRUMENT),
            str(NL2SQL_OBS),
            "demo",
            "--requests",
            "4",
            "--concurrency",
            "2",
            "--failure-rate",
            "0.5",
            "--seed",
            "3",
            "--time-scale",
            "0",
            "--db",
            str(tmp_path / "demo.sqlite3"),
            "--summary-json",
            str(summary_path),
            "--no-progress",
            "--question",
            "Which orders did jane.doe@example.com place?",
        ],
        env=_env(tmp_path, OBSERVABILITY_EXPORTER="console"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    records = _json_lines(proc.stdout)
    spans = [r for r in records if "context" in r and "name" in r]
    metric_batches = [r for r in records if "resource_metrics" in r]
    assert spans, proc.stdout[-2000:]
    # our configurator built the resource
    assert {s["resource"]["attributes"]["telemetry.distro.name"] for s in spans} == {"nl2sql-observability"}
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"nl2sql"}
    names = {s["name"] for s in spans}
    assert {"invoke_workflow nl2sql", "node lookup_schema", "node generate_sql", "chat nl2sql-sim-1"} <= names
    # the sqlite3 instrumentor was loaded by the launcher (the app code has none)
    sql_spans = [s for s in spans if s["kind"] == "SpanKind.CLIENT" and s["name"] != "chat nl2sql-sim-1"]
    assert sql_spans
    assert all("sqlite" in json.dumps(s["attributes"]) for s in sql_spans)
    # one workflow span per request, the summary's trace ids are the spans' trace ids
    roots = [s for s in spans if s["name"] == "invoke_workflow nl2sql"]
    assert sorted(s["context"]["trace_id"][2:] for s in roots) == sorted(summary["trace_ids"])
    for s in roots:
        assert s["attributes"]["tenant.id"] in {"acme", "globex", "initech"}
    failed = [s for s in spans if s["name"] == "node validate_sql" and s["status"]["status_code"] == "ERROR"]
    assert len(failed) == summary["validations"]["failed"]
    assert all(s["attributes"]["error.type"] for s in failed)
    # the LLM calls reached the audit log, with the trace ids of the requests, scrubbed
    audit_lines = (tmp_path / "audit" / "events.log").read_text().splitlines()
    events = [json.loads(line) for line in audit_lines]
    calls = [e for e in events if e["kind"] == "llm_call"]
    assert len(calls) == sum(1 for s in spans if s["name"] == "chat nl2sql-sim-1")
    # and each request's outcome, one record per request
    assert sorted(e["trace_id"] for e in events if e["kind"] == "request") == sorted(summary["trace_ids"])
    assert {e["trace_id"] for e in events} <= set(summary["trace_ids"])
    assert any("Which orders did" in e["prompt_text"] for e in calls)
    assert "jane.doe@example.com" not in "\n".join(audit_lines)
    metric_names = {
        m["name"]
        for batch in metric_batches
        for rm in batch["resource_metrics"]
        for sm in rm["scope_metrics"]
        for m in sm["metrics"]
    }
    assert {
        "nl2sql.node.duration",
        "nl2sql.request.duration",
        "nl2sql.sql.validations",
        "nl2sql.llm.tokens",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
    } <= metric_names


def _fake_competing_distro(root: Path, marker: Path) -> None:
    """A package that registers the names opentelemetry-distro uses and would break if loaded."""
    dist = root / "competing_distro-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: competing-distro\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[opentelemetry_configurator]\nconfigurator = competing_conf:Configurator\n"
    )
    (root / "competing_conf.py").write_text(
        textwrap.dedent(
            f"""
            from opentelemetry.sdk._configuration import _BaseConfigurator

            class Configurator(_BaseConfigurator):
                def _configure(self, **kwargs):
                    open({str(marker)!r}, "w").write("loaded")
            """
        )
    )


def test_our_configurator_wins_over_a_competing_one(tmp_path):
    marker = tmp_path / "competing-loaded"
    site = tmp_path / "site"
    _fake_competing_distro(site, marker)
    app = tmp_path / "app.py"
    app.write_text(
        "from opentelemetry import trace\n"
        "with trace.get_tracer('app').start_as_current_span('app work'):\n"
        "    pass\n"
    )
    proc = subprocess.run(
        [str(INSTRUMENT), sys.executable, str(app)],
        env=_env(tmp_path, OBSERVABILITY_EXPORTER="console", PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "the competing configurator was loaded"
    spans = [r for r in _json_lines(proc.stdout) if r.get("name") == "app work"]
    assert spans
    assert spans[0]["resource"]["attributes"]["telemetry.distro.name"] == "nl2sql-observability"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        (
            "OBSERVABILITY_EXPORTER",
            "otlpp",
            "OBSERVABILITY_EXPORTER='otlpp' is not allowed; allowed values: otlp, console, none",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not allowed; allowed values: grpc, http/protobuf",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "not-a-url",
            "OTEL_EXPORTER_OTLP_ENDPOINT='not-a-url' is not allowed; allowed values: an http:// or https://",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:431800/v1/traces",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='http://collector:431800/v1/traces' is not allowed",
        ),
        (
            "OTEL_TRACES_EXPORTER",
            "console,zipkin",
            "OTEL_TRACES_EXPORTER='console,zipkin' is not allowed; allowed values: otlp, console, none",
        ),
        # the settings of logging, audit and scrubbing are checked before the app runs too,
        # not at the first log line or LLM call
        (
            "OBSERVABILITY_LOG_FORMAT",
            "yaml",
            "OBSERVABILITY_LOG_FORMAT='yaml' is not valid; allowed: auto, json, text",
        ),
        ("OBSERVABILITY_LOG_LEVEL", "LOUD", "OBSERVABILITY_LOG_LEVEL='LOUD' is not valid; allowed: DEBUG"),
        (
            "OBSERVABILITY_AUDIT_SINK",
            "s3",
            "OBSERVABILITY_AUDIT_SINK='s3': Input should be 'file' or 'sqlite'",
        ),
        # the message names the one bad pattern inside the JSON list
        (
            "OBSERVABILITY_SCRUB_EXTRA_PATTERNS",
            '["ok", "("]',
            "OBSERVABILITY_SCRUB_EXTRA_PATTERNS: '(' is not a valid regular expression",
        ),
        # the price table behind nl2sql.llm.cost
        (
            "OBSERVABILITY_PRICES_FILE",
            "/nonexistent/prices.json",
            "OBSERVABILITY_PRICES_FILE='/nonexistent/prices.json': no such file",
        ),
    ],
)
def test_bad_setting_stops_startup_with_one_message(tmp_path, var, value, expected):
    app = tmp_path / "app.py"
    app.write_text("print('the app ran')\n")
    proc = subprocess.run(
        [str(INSTRUMENT), sys.executable, str(app)],
        env=_env(tmp_path, **{var: value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "the app ran" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nl2sql-observability: invalid observability configuration: "), lines[0]
    assert expected in lines[0]


def _demo_args(tmp_path: Path) -> list[str]:
    return [
        str(NL2SQL_OBS),
        "demo",
        "--requests",
        "2",
        "--time-scale",
        "0",
        "--db",
        str(tmp_path / "demo.sqlite3"),
        "--no-progress",
    ]


def _run_plain_demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`nl2sql-obs demo` without `opentelemetry-instrument`: it configures telemetry itself."""
    return subprocess.run(
        _demo_args(tmp_path),
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plain_demo_configures_itself(tmp_path):
    proc = _run_plain_demo(tmp_path, OBSERVABILITY_EXPORTER="console")
    assert proc.returncode == 0, proc.stderr[-3000:]
    spans = [r for r in _json_lines(proc.stdout) if "context" in r]
    assert {s["name"] for s in spans} >= {"invoke_workflow nl2sql", "node answer"}
    assert spans[0]["resource"]["attributes"]["telemetry.distro.name"] == "nl2sql-observability"


def test_plain_demo_bad_setting_one_message(tmp_path):
    proc = _run_plain_demo(tmp_path, OBSERVABILITY_EXPORTER="jaeger")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nl2sql-observability: invalid observability configuration: "
        "OBSERVABILITY_EXPORTER='jaeger' is not allowed; allowed values: otlp, console, none"
    ]


def test_sdk_disabled_means_no_telemetry_and_a_working_app(tmp_path):
    proc = subprocess.run(
        [str(INSTRUMENT), *_demo_args(tmp_path)],
        env=_env(tmp_path, OBSERVABILITY_EXPORTER="console", OTEL_SDK_DISABLED="true"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [r for r in _json_lines(proc.stdout) if "context" in r]
    assert "nl2sql demo: 2 requests" in proc.stdout
