"""The demo end to end (in process, with in-memory telemetry) and its CLI."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from nl2sql_observability.cli import main
from nl2sql_observability.demo.run import DemoOptions, run_demo
from opentelemetry.trace import StatusCode


def _opts(tmp_path: Path, **kw) -> DemoOptions:
    base = {
        "requests": 12,
        "concurrency": 1,
        "time_scale": 0.0,
        "db": tmp_path / "demo.sqlite3",
        "progress": False,
    }
    base.update(kw)
    return DemoOptions(**base)


def test_same_seed_same_answers_and_tokens_whatever_the_concurrency(tmp_path, captured, audit_calls):
    one = run_demo(_opts(tmp_path, failure_rate=0.3, seed=5))
    many = run_demo(_opts(tmp_path, failure_rate=0.3, seed=5, concurrency=6, time_scale=0.02))
    assert one["answers"] == many["answers"]
    assert one["tokens_by_tenant"] == many["tokens_by_tenant"]
    assert one["failures"] == many["failures"]
    other = run_demo(_opts(tmp_path, failure_rate=0.3, seed=6))
    assert other["answers"] != one["answers"]


def test_summary_shape_and_telemetry(tmp_path, captured, audit_calls):
    summary = run_demo(_opts(tmp_path, failure_rate=0.5, seed=1, tenants=("a1", "b2")))
    assert summary["requests"] == 12
    assert len(summary["trace_ids"]) == 12
    assert all(len(t) == 32 and int(t, 16) for t in summary["trace_ids"])
    assert len(set(summary["trace_ids"])) == 12
    v = summary["validations"]
    assert v["passed"] + v["failed"] == 12
    assert v["failed"] == sum(summary["failures"].values()) > 0
    assert set(summary["failures"]) <= {"unknown_column", "syntax_error", "forbidden_write"}
    assert set(summary["tokens_by_tenant"]) == {"a1", "b2"}
    assert set(summary["node_latency_ms"]) == {
        "lookup_schema",
        "generate_sql",
        "validate_sql",
        "execute_sql",
        "answer",
    }
    assert len(summary["failed_trace_ids"]) == v["failed"]
    assert isinstance(summary["elapsed_s"], float)

    spans = captured.spans()
    by_trace: dict[int, list] = {}
    for s in spans:
        by_trace.setdefault(s.context.trace_id, []).append(s)
    for tid in summary["failed_trace_ids"]:
        names = {s.name: s for s in by_trace[int(tid, 16)]}
        assert "node execute_sql" not in names  # the request ended without executing
        validate = names["node validate_sql"]
        assert validate.status.status_code == StatusCode.ERROR
        assert validate.attributes["error.type"] in summary["failures"]
        assert names["invoke_workflow nl2sql"].attributes["error.type"] == validate.attributes["error.type"]
    ok_trace = next(t for t in summary["trace_ids"] if t not in summary["failed_trace_ids"])
    names = [s.name for s in by_trace[int(ok_trace, 16)]]
    for expected in (
        "node lookup_schema",
        "node generate_sql",
        "node validate_sql",
        "node execute_sql",
        "node answer",
    ):
        assert expected in names
    assert names.count("chat nl2sql-sim-1") == 2
    failed_points = [
        p
        for p in captured.points("nl2sql.sql.validations")
        if p.attributes["nl2sql.validation.outcome"] == "failed"
    ]
    assert sum(p.value for p in failed_points) == v["failed"]
    tokens = sum(p.value for p in captured.points("nl2sql.llm.tokens") if p.attributes["tenant.id"] == "a1")
    assert tokens == sum(summary["tokens_by_tenant"]["a1"].values())


def test_failure_rate_extremes(tmp_path, captured, audit_calls):
    assert run_demo(_opts(tmp_path, failure_rate=0.0))["failures"] == {}
    all_fail = run_demo(_opts(tmp_path, failure_rate=1.0, requests=6))
    assert all_fail["validations"] == {"passed": 0, "failed": 6}


def test_extra_question_reaches_prompt_and_log(tmp_path, captured, audit_calls, caplog):
    question = "How much did alice@example.com spend?"
    with caplog.at_level(logging.INFO, logger="nl2sql_observability.demo"):
        summary = run_demo(
            _opts(tmp_path, requests=2, failure_rate=1.0, questions=(question,), tenants=("t1", "t2"))
        )
    assert summary["requests"] == 3
    assert summary["validations"]["passed"] == 1  # extra questions are never failure-injected
    prompts = [c for c in audit_calls if question in c.kwargs["prompt_text"]]
    assert prompts
    assert {c.record.trace_id for c in prompts} == {int(summary["trace_ids"][2], 16)}
    received = [r for r in caplog.records if r.getMessage() == "question received"]
    assert len(received) == 3
    assert received[-1].question == question  # type: ignore[attr-defined]
    root = next(s for s in captured.spans() if s.context.trace_id == int(summary["trace_ids"][2], 16))
    assert root.attributes["tenant.id"] == "t1"


def test_cli_summary_json_and_text(tmp_path, captured, audit_calls, capsys):
    out = tmp_path / "out" / "summary.json"
    rc = main(
        ["demo", "--requests", "3", "--time-scale", "0", "--db", str(tmp_path / "d.sqlite3"),
         "--summary-json", str(out), "--tenants", "x,y", "--seed", "9"]
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["requests"] == 3
    text = capsys.readouterr().out
    assert "p95" in text
    assert "where to look:" in text  # the URLs of the services that answer (none, or a running stack)
    assert data["trace_ids"][0] in text or (data["failed_trace_ids"] and data["failed_trace_ids"][0] in text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenants", "Acme Corp"], "'Acme Corp' is not allowed"),
        (["--tenants", "a" * 65], "is not allowed"),
        (["--failure-rate", "1.5"], "allowed: 0.0 to 1.0"),
        (["--concurrency", "0"], "'0' is not allowed (allowed: an integer, 1 or more)"),
        (["--time-scale", "-1"], "allowed: a number from 0 to 100"),
        (["--requests", "x"], "'x' is not a number (allowed: an integer, 0 or more)"),
    ],
)
def test_cli_bad_input(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_demo_subprocess(
    tmp_path: Path, name: str, **env_extra: str
) -> tuple[dict, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"), OBSERVABILITY_AUDIT_PATH=str(tmp_path / name / "events.log")
    )
    env.update(env_extra)
    summary = tmp_path / f"{name}.json"
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    proc = subprocess.run(
        [str(instrument), str(Path(sys.executable).parent / "nl2sql-obs"), "demo", "--requests", "8",
         "--concurrency", "4", "--time-scale", "0.1", "--seed", "11", "--failure-rate", "0.25",
         "--db", str(tmp_path / "demo.sqlite3"), "--summary-json", str(summary), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(summary.read_text()), proc


def test_dead_collector_costs_nothing(tmp_path):
    port = _closed_port()
    baseline, _ = _run_demo_subprocess(tmp_path, "none", OBSERVABILITY_EXPORTER="none")
    dead, proc = _run_demo_subprocess(
        tmp_path,
        "dead",
        OBSERVABILITY_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
    )
    assert dead["answers"] == baseline["answers"]
    assert dead["tokens_by_tenant"] == baseline["tokens_by_tenant"]
    assert "Traceback" not in proc.stderr
    # How long it takes is measured by benchmarks/bench_dead_collector.py, not asserted here.


def test_summary_totals_equal_what_the_metrics_recorded(tmp_path, captured, audit_calls):
    """The demo's own cost, tokens and request counts per tenant, node and model are what its
    telemetry says: the numbers the dashboards' totals must show."""
    from collections import defaultdict

    summary = run_demo(_opts(tmp_path, failure_rate=0.3, seed=3, tenants=("a1", "b2", "c3")))
    metrics = captured.metrics()

    def total(name: str, key: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for point in metrics[name].data.data_points:
            out[str(point.attributes[key])] += point.value
        return dict(out)

    cost_by_tenant = total("nl2sql.llm.cost", "tenant.id")
    assert set(cost_by_tenant) == set(summary["cost_usd_by_tenant"]) == {"a1", "b2", "c3"}
    for tenant, cost in summary["cost_usd_by_tenant"].items():
        assert cost == pytest.approx(cost_by_tenant[tenant], rel=1e-12)
    for node, cost in total("nl2sql.llm.cost", "nl2sql.node.name").items():
        assert summary["cost_usd_by_node"][node] == pytest.approx(cost, rel=1e-12)
    for model, cost in total("nl2sql.llm.cost", "gen_ai.request.model").items():
        assert summary["cost_usd_by_model"][model] == pytest.approx(cost, rel=1e-12)
    tokens_by_node = total("nl2sql.llm.tokens", "nl2sql.node.name")
    assert {n: t["input"] + t["output"] for n, t in summary["tokens_by_node"].items()} == tokens_by_node
    requests = defaultdict(int)
    for point in metrics["nl2sql.request.duration"].data.data_points:
        requests[point.attributes["tenant.id"]] += point.count
    assert summary["requests_by_tenant"] == dict(requests)
    assert summary["unpriced_tokens_by_model"] == {}  # the demo's model is in the packaged price table


def test_demo_produces_every_outcome_and_feedback(tmp_path, captured, monkeypatch):
    """--error-rate adds SQL errors, timeouts and provider errors past validation; the catalog has
    questions without data; the counts the package derived (zero code) equal the demo's own."""
    from nl2sql_observability import feedback
    from nl2sql_observability.audit import AuditLog, AuditSettings, set_audit_log
    from test_feedback import Sent

    set_audit_log(AuditLog(AuditSettings(path=tmp_path / "audit.log")))
    sent = Sent()
    monkeypatch.setattr(feedback, "emitter_factory", sent.factory)
    try:
        summary = run_demo(
            _opts(tmp_path, requests=60, failure_rate=0.15, error_rate=0.3, feedback_rate=0.5, seed=3)
        )
    finally:
        set_audit_log(None)
    outcomes = summary["outcomes"]
    assert set(outcomes) == {
        "answered",
        "empty_result",
        "validation_rejected",
        "sql_error",
        "timeout",
        "llm_error",
    }
    assert sum(outcomes.values()) == 60
    counted: dict[str, int] = {}
    for point in captured.points("nl2sql.requests"):
        name = point.attributes["nl2sql.outcome"]
        counted[name] = counted.get(name, 0) + point.value
    assert counted == outcomes
    assert sum(summary["feedback"].values()) == len(sent.records()) > 0
    assert {r.log_record.attributes["gen_ai.evaluation.score.label"] for r in sent.records()} == set(
        summary["feedback"]
    )
