"""`opentelemetry-instrument python app.py` on a LangGraph app with no observability code: the
launcher loads our instrumentor by its entry point, and every contract signal leaves the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from otlp_receiver import Received, otlp_receiver

APP = Path(__file__).parent / "apps" / "sql_agent_app.py"


def _run(tmp_path: Path, endpoint: str, **extra: str) -> tuple[dict, subprocess.CompletedProcess[str]]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_", "NL2SQL_OBS_"))
    }
    env.update(
        OBSERVABILITY_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_METRIC_EXPORT_INTERVAL="600000",  # metrics leave at exit: the flush is part of the test
        OBSERVABILITY_AUDIT_PATH=str(tmp_path / "audit" / "events.log"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    env.update(extra)
    summary = tmp_path / "summary.json"
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    proc = subprocess.run(
        [str(launcher), sys.executable, str(APP), "--requests", "6", "--summary-json", str(summary)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(summary.read_text()), proc


def _by_attr(points: list[tuple[dict, object]], *keys: str) -> Counter:
    out: Counter = Counter()
    for attrs, point in points:
        out[tuple(attrs.get(k) for k in keys)] += getattr(point, "as_int", 0) or getattr(point, "count", 0)
    return out


def test_unmodified_app_gets_every_signal(tmp_path: Path) -> None:
    with otlp_receiver() as (got, endpoint):
        summary, _ = _run(tmp_path, endpoint)
    _check_spans(got)
    tokens = _by_attr(got.points("nl2sql.llm.tokens"), "tenant.id")
    assert {t: n for (t,), n in tokens.items()} == summary["tokens"]
    nodes = _by_attr(got.points("nl2sql.node.duration"), "nl2sql.node.name", "tenant.id")
    assert nodes[("run_query", "acme")] == 3
    assert nodes[("check_query", "globex")] == 4  # requests 1, 3, 5; request 3 checks twice
    validations = _by_attr(got.points("nl2sql.sql.validations"), "nl2sql.validation.outcome")
    assert {o: n for (o,), n in validations.items()} == summary["validations"]
    requests = _by_attr(got.points("nl2sql.request.duration"), "tenant.id")
    assert requests == {("acme",): 3, ("globex",): 3}
    records = [json.loads(x) for x in (tmp_path / "audit" / "events.log").read_text().splitlines()]
    events = [e for e in records if e["kind"] == "llm_call"]
    assert len(events) == len(got.named("chat gpt-4o-mini"))
    # and one request record per question, on its workflow span
    roots = {(s.trace_id, s.span_id) for s in got.named("invoke_workflow nl2sql")}
    assert {(e["trace_id"], e["span_id"]) for e in records if e["kind"] == "request"} == roots
    sql_events = [e for e in events if "run_query" in e["response_text"]]
    assert sql_events
    # the generated SQL, a tool call's argument, is in the audit log: the good query and the rejected one
    assert sum("SELECT count(*) FROM orders" in e["response_text"] for e in sql_events) == 6
    assert sum("SELEC nonsense" in e["response_text"] for e in sql_events) == 2
    assert {e["node"] for e in events} == {"call_get_schema", "generate_query"}
    assert {e["session_id"] for e in events} == {f"req-{i}" for i in range(6)}
    app_logs = [rec for rec in got.logs if rec[0].startswith("question ")]
    assert len(app_logs) == 6


def _check_spans(got: Received) -> None:
    roots = got.named("invoke_workflow nl2sql")
    assert len(roots) == 6
    assert {r.attributes["session.id"] for r in roots} == {f"req-{i}" for i in range(6)}
    assert len({r.trace_id for r in roots}) == 6
    assert all(not r.parent_span_id for r in roots)
    by_id = {s.span_id: s for s in got.spans}
    for span in got.spans:
        if span.name.startswith("node "):
            parent = by_id[span.parent_span_id]
            assert parent.name == "invoke_workflow nl2sql"
            assert span.attributes["tenant.id"] == parent.attributes["tenant.id"]
        if span.name.startswith("chat "):
            parent = by_id[span.parent_span_id]
            assert parent.name == f"node {span.attributes['nl2sql.node.name']}"
            assert span.kind == 3  # CLIENT
    sql = [s for s in got.spans if s.name == "SELECT" and "orders" in str(s.attributes.get("db.statement"))]
    assert sql
    assert all(by_id[s.parent_span_id].name == "node run_query" for s in sql)


def test_disabled_by_name(tmp_path: Path) -> None:
    with otlp_receiver() as (got, endpoint):
        _run(tmp_path, endpoint, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="nl2sql_langgraph")
    assert got.named("invoke_workflow nl2sql") == []
    assert not [s for s in got.spans if s.name.startswith(("node ", "chat "))]
    assert [s for s in got.spans if s.name == "SELECT"], "other instrumentations still run"
