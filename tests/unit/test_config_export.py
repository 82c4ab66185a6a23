"""Export paths: everything leaves the process at a normal exit (also where no thread can be started
at exit, CPython 3.12.0-3.12.2), exporter lists, and a dead collector as one line per state change."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from nl2sql_observability import configurator
from nl2sql_observability.configurator import build_telemetry
from nl2sql_observability.exporthealth import ExportHealth, WatchedSpanExporter, install_noise_filter
from nl2sql_observability.settings import load_settings
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from otlp_receiver import otlp_receiver
from test_distro_entrypoints import _env

BIN = Path(sys.executable).parent
INSTRUMENT = BIN / "opentelemetry-instrument"
SPANS = 25
AFTER = "retrying in the background, the app is not affected"

# An app with no telemetry code: spans, a counter and a log line, then a normal exit. The queues are
# only emptied at exit (long batch delay and metric interval), so the exit flush is what is tested.
APP = f"""
import logging
from opentelemetry import metrics, trace

tracer = trace.get_tracer("app")
counter = metrics.get_meter("app").create_counter("app.work")
for i in range({SPANS}):
    with tracer.start_as_current_span(f"work {{i}}"):
        counter.add(1)
logging.getLogger("app").warning("app finished")
"""


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _run_app(tmp_path: Path, app: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "app.py"
    path.write_text(app)
    return subprocess.run(
        [str(INSTRUMENT), sys.executable, str(path)],
        # the queues are emptied only at exit
        env=_env(tmp_path, OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_BLRP_SCHEDULE_DELAY="600000", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument not installed")
def test_an_app_that_exits_normally_delivers_everything(tmp_path):
    with otlp_receiver() as (got, endpoint):
        proc = _run_app(tmp_path, APP, OBSERVABILITY_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        assert proc.returncode == 0, proc.stderr[-3000:]
        names = sorted(s.name for s in got.spans)
        assert names == sorted(f"work {i}" for i in range(SPANS)), proc.stderr[-3000:]
        assert [p.as_int for _, p in got.points("app.work")] == [SPANS]
        assert [body for body, *_ in got.logs] == ["app finished"]
    assert "can't create new thread" not in proc.stderr


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument not installed")
def test_an_exporter_list_sends_to_each(tmp_path):
    with otlp_receiver() as (got, endpoint):
        proc = _run_app(
            tmp_path,
            APP,
            OBSERVABILITY_EXPORTER="none",
            OTEL_TRACES_EXPORTER="console,otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        on_console = [
            json.loads(line)["name"] for line in proc.stdout.splitlines() if line.startswith('{"name"')
        ]
        assert sorted(on_console) == sorted(s.name for s in got.spans)
        assert len(on_console) == SPANS
        assert got.metric_points == []  # metrics follow OBSERVABILITY_EXPORTER=none


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument not installed")
def test_a_dead_collector_is_one_json_line_per_endpoint(tmp_path):
    port = closed_port()
    # Every endpoint fails before exit (traces twice), and once more in the exit flush.
    flush_all = (
        "from opentelemetry._logs import get_logger_provider as logger_provider\n"
        "for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), logger_provider()):\n"
        "    provider.force_flush()\n"
    )
    app = APP + "trace.get_tracer_provider().force_flush()\n" + APP + flush_all
    proc = _run_app(
        tmp_path,
        app,
        OBSERVABILITY_EXPORTER="otlp",
        OBSERVABILITY_LOG_FORMAT="json",
        # long enough for one retry, so that the SDK logs the error it retries on
        OBSERVABILITY_EXPORT_TIMEOUT="2",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    for noise in ("Traceback", "Transient error", "Max retries", "Failed to export"):
        assert noise not in output, output[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is a JSON record
    export_lines = [r for r in records if r["logger"] == "nl2sql_observability.export"]
    down = [r for r in export_lines if not r["message"].startswith("telemetry not sent at exit")]
    endpoints = [r["message"].split()[3] for r in down]
    assert sorted(endpoints) == sorted(
        f"http://127.0.0.1:{port}/v1/{signal}" for signal in ("traces", "metrics", "logs")
    ), down
    assert all(r["level"] == "WARNING" for r in down)
    (traces,) = [r["message"] for r in down if "(traces)" in r["message"]]
    assert traces.endswith(f"Connection refused; {AFTER}"), traces
    assert "opentelemetry" not in " ".join(r["logger"] for r in records)
    assert [r["message"] for r in records if r["logger"] == "app"] == ["app finished"] * 2


def test_dead_then_back_is_one_line_each(caplog):
    port = closed_port()
    health = ExportHealth(min_interval_s=0)
    exporter = WatchedSpanExporter(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1), "traces", health
    )
    install_noise_filter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    caplog.set_level(logging.DEBUG)
    try:
        for _ in range(3):
            tracer.start_span("lost").end()
        with otlp_receiver(port) as (got, _):
            for _ in range(3):
                tracer.start_span("kept").end()
            wait_until(lambda: len(got.spans) == 3, what="the spans after the receiver came back")
        assert [s.name for s in got.spans] == ["kept"] * 3
    finally:
        provider.shutdown()
    ours = [r.getMessage() for r in caplog.records if r.name == "nl2sql_observability.export"]
    assert len(ours) == 2, ours
    assert ours[0].startswith(f"telemetry export to http://127.0.0.1:{port}/v1/traces failed (traces): ")
    assert ours[1] == f"telemetry export to http://127.0.0.1:{port}/v1/traces is working again (traces)"
    assert [r.name for r in caplog.records if r.name.startswith("opentelemetry.exporter")] == []


def test_state_changes_are_rate_limited_per_endpoint(caplog):
    now = [0.0]
    health = ExportHealth(min_interval_s=30, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="nl2sql_observability.export")

    health.record("a", "traces", ok=False, reason="refused")  # down: said at once
    health.record("b", "metrics", ok=False, reason="refused")  # another endpoint: its own line
    now[0] = 10
    health.record("a", "traces", ok=True)  # back within 30 s of the last line: folded for now
    health.record("a", "traces", ok=False)
    assert len(caplog.records) == 2
    now[0] = 31
    health.record("a", "traces", ok=True)  # the interval has passed: the change is said
    health.record("a", "traces", ok=True)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"telemetry export to a failed (traces): refused; {AFTER}",
        f"telemetry export to b failed (metrics): refused; {AFTER}",
        "telemetry export to a is working again (traces)",
    ]


def test_an_exporter_that_raises_is_a_failed_export(caplog):
    class Broken(OTLPSpanExporter):
        def export(self, spans):
            raise ConnectionError("boom")

    caplog.set_level(logging.WARNING)
    exporter = WatchedSpanExporter(Broken(endpoint="http://127.0.0.1:9/v1/traces"), "traces", ExportHealth())
    assert exporter.export([]).name == "FAILURE"
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [f"ConnectionError: boom; {AFTER}"]
    exporter.shutdown()
    exporter.shutdown()  # a second shutdown is quiet too
    assert len(caplog.records) == 1


class _NoThreads:
    """Stands in for `threading` in the configurator: like atexit on CPython 3.12.0-3.12.2."""

    class Thread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")


def test_shutdown_without_new_threads_still_delivers_everything(monkeypatch, capsys):
    t = build_telemetry(
        load_settings({"OBSERVABILITY_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "none"}),
        shutdown_on_exit=False,
    )
    tracer = t.tracer_provider.get_tracer("t")
    counter = t.meter_provider.get_meter("m").create_counter("c")
    for i in range(SPANS):
        with tracer.start_as_current_span(f"work {i}"):
            counter.add(1)
    monkeypatch.setattr(configurator, "threading", types.SimpleNamespace(Thread=_NoThreads.Thread))
    assert t.shutdown(timeout_s=10) is True
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["name"] for r in records if "context" in r) == sorted(f"work {i}" for i in range(SPANS))
    points = [
        p
        for r in records
        if "resource_metrics" in r
        for rm in r["resource_metrics"]
        for sm in rm["scope_metrics"]
        for m in sm["metrics"]
        if m["name"] == "c"
        for p in m["data"]["data_points"]
    ]
    assert [p["value"] for p in points] == [SPANS]


def test_shutdown_without_new_threads_is_bounded_on_a_dead_collector(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
    # A long export timeout: the retry loop alone would outlast the shutdown budget.
    t = build_telemetry(load_settings({"OBSERVABILITY_EXPORT_TIMEOUT": "60"}), shutdown_on_exit=False)
    tracer = t.tracer_provider.get_tracer("t")
    for _ in range(3):
        tracer.start_span("lost").end()
    monkeypatch.setattr(configurator, "threading", types.SimpleNamespace(Thread=_NoThreads.Thread))
    result: list[bool] = []
    caller = threading.Thread(target=lambda: result.append(t.shutdown(timeout_s=0.5)), daemon=True)
    caller.start()
    # Unbounded, this would wait for the 60 s export timeout per signal; the join only keeps a
    # regression from hanging CI.
    caller.join(timeout=50)
    assert not caller.is_alive(), "Telemetry.shutdown() waited for a dead collector past its budget"
    assert result == [False]


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument not installed")
def test_a_short_lived_app_with_a_dead_collector_says_at_exit_what_was_not_sent(tmp_path):
    # A collector that takes connections and never answers: the exit flush outlives the shutdown
    # budget, so no export ever returns a failure before the process ends.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        port = black_hole.getsockname()[1]
        proc = _run_app(
            tmp_path,
            APP,  # everything is queued until exit: the exit flush is the only export
            OBSERVABILITY_EXPORTER="otlp",
            OBSERVABILITY_LOG_FORMAT="json",
            # shorter than one export's timeout: whatever is still queued when the budget ends is
            # counted from its processor's queue, whatever is in flight from the export
            OBSERVABILITY_SHUTDOWN_TIMEOUT="1",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    (at_exit,) = [r["message"] for r in records if r["message"].startswith("telemetry not sent at exit")]
    assert f"{SPANS} spans to http://127.0.0.1:{port}/v1/traces" in at_exit, at_exit
    # also where no thread can start at exit (CPython 3.12.0-3.12.2): the spans' dead endpoint takes the
    # whole budget there and the log record, still queued, is counted from its processor's queue
    assert f"1 log record to http://127.0.0.1:{port}/v1/logs" in at_exit, at_exit


@pytest.mark.parametrize(
    ("content_type", "body", "why"),
    [
        ("text/html", b"<html>Welcome to the proxy</html>", "text/html body"),
        ("application/x-protobuf", b"OK", "not an OTLP protobuf response"),
        ("application/json", b"[1, 2]", "not an object"),
    ],
)
def test_a_2xx_answer_that_is_not_otlp_is_a_failure(content_type: str, body: bytes, why: str) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from nl2sql_observability.exporthealth import checked_session
    from opentelemetry.sdk.trace.export import SpanExportResult

    class Junk(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Junk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reasons: list[str | None] = []
        health = ExportHealth(min_interval_s=0)
        health.record = lambda endpoint, signal, ok, reason=None: reasons.append(None if ok else reason)  # type: ignore[method-assign]
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        inner = OTLPSpanExporter(endpoint=endpoint, timeout=5, session=checked_session("traces"))
        exporter = WatchedSpanExporter(inner, "traces", health)
        provider = TracerProvider()
        captured: list[object] = []
        provider.add_span_processor(SimpleSpanProcessor(_Capture(captured)))
        provider.get_tracer("t").start_span("s").end()
        assert exporter.export(captured) == SpanExportResult.FAILURE  # type: ignore[arg-type]
        assert len(reasons) == 1
        assert reasons[0] is not None
        assert why in reasons[0]
        assert health.unsent_summary() is not None
    finally:
        server.shutdown()
        server.server_close()


class _Capture:
    def __init__(self, into: list[object]) -> None:
        self.into = into

    def export(self, spans: object) -> object:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.into.extend(spans)  # type: ignore[call-overload]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def test_the_exit_summary_counts_queued_and_in_flight_items_once(caplog: pytest.LogCaptureFixture) -> None:
    health = ExportHealth(min_interval_s=0)
    endpoint = "http://127.0.0.1:4318/v1/logs"
    health.sending(endpoint, "logs", 2)  # an export in flight that never succeeded
    with caplog.at_level(logging.WARNING, logger="nl2sql_observability"):
        health.warn_unsent(lambda: [(endpoint, "logs", 3), (endpoint, "traces", 0)])
        # the worker takes the queued items after the summary: they were counted there already
        health.sending(endpoint, "logs", 3)
        health.warn_unsent()
    summaries = [r.getMessage() for r in caplog.records if "not sent at exit" in r.getMessage()]
    assert summaries == [f"telemetry not sent at exit: 5 log records to {endpoint} (not reachable)"]
    assert health.unsent_summary() is None


def test_the_exit_summary_survives_a_queue_reader_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    health = ExportHealth(min_interval_s=0)
    health.sending("http://127.0.0.1:4318/v1/traces", "traces", 4)

    def broken() -> list[tuple[str, str, int]]:
        raise RuntimeError("an SDK whose processor changed shape")

    with caplog.at_level(logging.WARNING, logger="nl2sql_observability"):
        health.warn_unsent(broken)
    assert any("4 spans to http://127.0.0.1:4318/v1/traces" in r.getMessage() for r in caplog.records)
