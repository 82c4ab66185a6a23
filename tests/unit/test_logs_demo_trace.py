"""End to end in a subprocess: `opentelemetry-instrument nl2sql-obs demo` against a local OTLP/HTTP
receiver. The JSON log lines it prints carry the trace and span ids of the spans it exported, each log
record reaches the OTLP log pipeline exactly once, and every audit event points at its `chat` span."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp_receiver import Received, otlp_receiver


@pytest.fixture
def receiver() -> Iterator[tuple[Received, str]]:
    with otlp_receiver() as found:
        yield found


def test_demo_json_logs_carry_the_exported_trace_ids(tmp_path: Path, receiver: tuple[Received, str]) -> None:
    state, endpoint = receiver
    bindir = Path(sys.executable).parent
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_", "NL2SQL_OBS_"))
    }
    env.update(
        OBSERVABILITY_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    proc = subprocess.run(
        [
            str(bindir / "opentelemetry-instrument"),
            str(bindir / "nl2sql-obs"),
            "demo",
            "--requests",
            "4",
            "--failure-rate",
            "0.5",
            "--time-scale",
            "0",
            "--no-progress",
            "--question",
            "Which customer has the e-mail jane.doe@example.com?",
            "--db",
            str(tmp_path / "demo.sqlite3"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    questions = [line for line in lines if line["message"] == "question received"]
    assert len(questions) == 5

    workflow_traces = {s.trace_id for s in state.named("invoke_workflow nl2sql")}
    schema_spans = {(s.trace_id, s.span_id) for s in state.named("node lookup_schema")}
    chat_spans = {(s.trace_id, s.span_id) for s in state.spans if s.name.startswith("chat ")}
    assert len(workflow_traces) == 5
    for line in questions:  # logged by the app inside its first node, which the instrumentor made current
        assert (line["trace_id"], line["span_id"]) in schema_spans
        assert line["trace_id"] in workflow_traces
        assert line["node"] == "lookup_schema"
        assert line["trace_flags"] in ("01", "03")
        assert line["tenant_id"]
        assert line["session_id"]
        assert line["service.name"] == "nl2sql"
    assert "jane.doe@example.com" not in proc.stdout
    assert any("[REDACTED:email]" in str(line.get("question")) for line in questions)

    # The same records went through the OTLP log pipeline exactly once (no duplicate handler), scrubbed.
    otlp_questions = [rec for rec in state.logs if rec[0] == "question received"]
    assert sorted((t, s) for _, t, s, _ in otlp_questions) == sorted(
        (str(line["trace_id"]), str(line["span_id"])) for line in questions
    )
    assert all("jane.doe@example.com" not in json.dumps(rec) for rec in state.logs)

    # Every LLM call's audit event points at its chat span; every request and feedback record at the
    # request's workflow span.
    audit_file = tmp_path / "data" / "nl2sql-observability" / "audit" / "events.log"
    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    workflow_spans = {(s.trace_id, s.span_id) for s in state.named("invoke_workflow nl2sql")}
    assert events
    for event in events:
        spans = chat_spans if event["kind"] == "llm_call" else workflow_spans
        assert (event["trace_id"], event["span_id"]) in spans, event["kind"]
        assert event["tenant_id"]
    assert sum(1 for e in events if e["kind"] == "request") == 5
    assert "jane.doe@example.com" not in audit_file.read_text()
