"""The log store (VictoriaLogs) in the real stack: the demo's log records arrive through the
collector's logs pipeline and are found by trace id, tenant and level; a failed validation's warning
links to a trace Jaeger has; the planted secret is absent; a restart keeps the data.

What the store must hold is read from the demo's own JSON log lines on stdout (the same records,
written by the console handler), never written down here.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
import yaml
from demo import DemoRun, demo
from stackkit import FIGURES, ROOT, Stack, logsql_quote, wait_until
from test_2_demo import wait_for_traces

OVERVIEW = ROOT / "grafana" / "dashboards" / "nl2sql-overview.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
LOGS_DATASOURCE = "victoriametrics-logs-datasource"


def _in_run(run: DemoRun) -> str:
    """LogsQL: this run's log lines (its own deployment environment is a stream field), without the
    `gen_ai.evaluation.result` events of its evaluators and feedback (test_9_quality), which have no
    JSON line on the console."""
    return f"_stream:{{deployment.environment.name={logsql_quote(run.environment)}}} -{EVALUATION_FIELD}:*"


EVALUATION_FIELD = "gen_ai.evaluation.name"


def _app_lines(run: DemoRun) -> list[dict[str, Any]]:
    """The demo's JSON log lines that went to OTLP too (the SDK's own records stay on the console)."""
    return [r for r in run.log_records() if not str(r.get("logger", "")).startswith("opentelemetry")]


def _provisioned(uid: str) -> dict[str, Any]:
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return dict(next(d for d in datasources if d["uid"] == uid))


def _count(stack: Stack, query: str) -> int:
    rows = stack.logs(f"{query} | stats count() hits")
    return int(rows[0]["hits"]) if rows else 0


@pytest.fixture(scope="module")
def logs_run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """A demo run whose every log record is in the store (as many as its JSON lines on stdout)."""
    run = demo(stack, tmp_path_factory.mktemp("demo-logs"), requests=24, failure_rate=0.3, seed=11)
    run.start().wait().check()
    expected = len(_app_lines(run))
    assert expected, "the demo wrote no JSON log line"
    wait_until(
        lambda: _count(stack, _in_run(run)) >= expected,
        timeout=60,
        what=f"{expected} log records of the run in VictoriaLogs",
    )
    FIGURES.put("log records of the logs demo run (stdout = store)", str(expected))
    FIGURES.put(
        "VictoriaLogs resident memory after the logs run", f"{stack.memory_mib()['victorialogs']:.0f} MiB"
    )
    return run


def test_every_log_line_is_in_the_store_once(stack: Stack, logs_run: DemoRun) -> None:
    assert _count(stack, _in_run(logs_run)) == len(_app_lines(logs_run))


def test_log_lines_found_by_trace_id(stack: Stack, logs_run: DemoRun) -> None:
    by_trace: dict[str, Counter[str]] = {}
    for line in _app_lines(logs_run):
        if line.get("trace_id"):
            by_trace.setdefault(line["trace_id"], Counter())[line["message"]] += 1
    assert len(by_trace) >= 10, f"too few traced log lines to check: {len(by_trace)}"
    # the query Grafana runs for "logs of this trace" (Jaeger datasource -> VictoriaLogs)
    (derived,) = _provisioned("victorialogs")["jsonData"]["derivedFields"]
    derived_field = derived["matcherRegex"]
    link = _provisioned("jaeger")["jsonData"]["tracesToLogsV2"]["query"].replace("$$", "$")
    for trace_id, messages in sorted(by_trace.items())[:10]:
        found = stack.logs(link.replace("${__trace.traceId}", trace_id))
        rows = [r for r in found if EVALUATION_FIELD not in r]
        assert Counter(r["_msg"] for r in rows) == messages, trace_id
        for r in rows:
            assert r[derived_field] == trace_id, r  # the log -> trace link reads this field
            assert len(r["span_id"]) == 16, r
            assert r["scope.name"], r  # the logger
            assert r["tenant_id"] in {"acme", "globex", "initech"}, r


def test_log_lines_found_by_tenant_and_level(stack: Stack, logs_run: DemoRun) -> None:
    lines = _app_lines(logs_run)
    tenants = Counter(str(r["tenant_id"]) for r in lines if r.get("tenant_id"))
    assert len(tenants) == 3, tenants
    for tenant, n in tenants.items():
        assert _count(stack, f"{_in_run(logs_run)} tenant_id:={logsql_quote(tenant)}") == n, tenant
    warnings = sum(1 for r in lines if r["level"] == "WARNING")
    assert warnings, "the run (30% bad SQL) logged no warning"
    assert _count(stack, f"{_in_run(logs_run)} severity_text:=WARN") == warnings


def test_failed_validation_warning_links_to_a_trace_jaeger_has(stack: Stack, logs_run: DemoRun) -> None:
    rows = stack.logs(f'{_in_run(logs_run)} severity_text:=WARN "sql validation failed"')
    assert rows, "no 'sql validation failed' warning in the store"
    failed = set(logs_run.summary["failed_trace_ids"])
    tenant_of = {str(r["trace_id"]): r.get("tenant_id") for r in _app_lines(logs_run) if r.get("trace_id")}
    for r in rows[:5]:
        assert r["trace_id"] in failed, r
        assert r["tenant_id"] == tenant_of[r["trace_id"]], r
        trace = wait_until(lambda t=r["trace_id"]: stack.trace(t), timeout=30, what=f"trace {r['trace_id']}")
        assert r["span_id"] in {s["spanID"] for s in trace["spans"]}, (
            "the log line's span is not in the trace"
        )


def test_overview_logs_panel_query_returns_the_runs_warnings(stack: Stack, logs_run: DemoRun) -> None:
    board = json.loads(OVERVIEW.read_text())
    targets = [
        t
        for p in board["panels"]
        if (p.get("datasource") or {}).get("type") == LOGS_DATASOURCE
        for t in p.get("targets", [])
    ]
    assert targets, "the overview dashboard has no logs panel"
    for t in targets:
        expr = t["expr"].replace("$env", logs_run.environment).replace("$tenant", ".*")
        expr = expr.replace("$service", "nl2sql")  # the demo's service.name (its job, too)
        assert "$" not in expr, expr
        rows = stack.logs(expr)
        assert rows, expr
        assert {r["severity_text"] for r in rows} <= {"WARN", "ERROR", "FATAL"}, expr


def test_planted_secret_is_absent_from_the_log_store(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    core = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    question = f"How many orders last month? (key sk-proj-{core}, password=Hunter2{core[:6]})"
    run = demo(
        stack,
        tmp_path_factory.mktemp("demo-logs-secret"),
        requests=3,
        failure_rate=0.0,
        seed=5,
        question=question,
    )
    run.start().wait().check()
    wait_for_traces(stack, run.summary["trace_ids"])
    expected = len(_app_lines(run))
    wait_until(lambda: _count(stack, _in_run(run)) >= expected, timeout=60, what="the run's log records")
    rows = stack.logs(_in_run(run))
    assert any("question" in r for r in rows), "the question's log line (where the secret was) is missing"
    blob = json.dumps(rows)
    for needle in (core, core[:16], f"Hunter2{core[:6]}"):
        assert needle not in blob, "secret found in the log store"
        assert _count(stack, logsql_quote(needle)) == 0, "secret found in the log store (full-text search)"


def test_log_store_restart_keeps_its_data(stack: Stack, logs_run: DemoRun) -> None:
    before = _count(stack, _in_run(logs_run))
    assert before
    stack.restart("victorialogs")
    stack.wait_healthy("victorialogs", timeout=90)
    after = wait_until(
        lambda: _count(stack, _in_run(logs_run)), timeout=60, what="VictoriaLogs answering again"
    )
    assert after == before
