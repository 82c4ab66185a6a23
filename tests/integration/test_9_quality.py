"""Answer quality against the real stack: the outcome counts Prometheus has equal the demo's own
summary, and a user's feedback is in VictoriaLogs by its trace id, on the workflow span Jaeger has."""

from __future__ import annotations

import json
from typing import Any

import pytest
from demo import DemoRun, demo
from stackkit import ROOT, Stack, logsql_quote, wait_until
from test_2_demo import wait_for_traces


@pytest.fixture(scope="module")
def quality_run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    run = demo(
        stack,
        tmp_path_factory.mktemp("demo-quality"),
        requests=40,
        failure_rate=0.15,
        seed=16,
        time_scale=0.05,
        extra_args=("--error-rate", "0.3", "--feedback-rate", "0.5"),
    )
    run.start().wait().check()
    return run


def _feedback_records(run: DemoRun) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in run.audit_path.read_text().splitlines()]
    return [e for e in events if e.get("kind") == "feedback"]


def test_outcome_counts_in_prometheus_equal_the_demo_summary(stack: Stack, quality_run: DemoRun) -> None:
    outcomes = quality_run.summary["outcomes"]
    assert {"answered", "validation_rejected", "sql_error", "timeout", "llm_error"} <= set(outcomes)
    env = quality_run.environment

    def counted() -> dict[str, int] | None:
        rows = stack.query(
            f'sum by (nl2sql_outcome) (nl2sql_requests_total{{deployment_environment_name="{env}"}})'
        )
        got = {r["metric"]["nl2sql_outcome"]: round(float(r["value"][1])) for r in rows}
        return got if got == outcomes else None

    wait_until(counted, timeout=90, interval=1, what=f"nl2sql_requests_total equal to the demo's {outcomes}")


def test_feedback_event_is_on_the_workflow_span_jaeger_has(stack: Stack, quality_run: DemoRun) -> None:
    feedback = _feedback_records(quality_run)
    assert len(feedback) == sum(quality_run.summary["feedback"].values()) > 0
    rated = feedback[0]
    trace_id = rated["trace_id"]
    (trace,) = wait_for_traces(stack, [trace_id]).values()
    (workflow,) = [s for s in trace["spans"] if s["operationName"] == "invoke_workflow nl2sql"]
    query = f'trace_id:{logsql_quote(trace_id)} gen_ai.evaluation.name:="user_feedback"'

    def found() -> list[dict[str, str]] | None:
        return stack.logs(query, start="1h") or None

    (record,) = wait_until(
        found, timeout=60, interval=1, what=f"the feedback event of {trace_id} in VictoriaLogs"
    )
    assert record["span_id"] == workflow["spanID"] == rated["span_id"]
    assert record["gen_ai.evaluation.score.label"] == rated["evaluation"]["label"]
    assert record["tenant.id"] == rated["tenant_id"]
    assert record["service.name"] == rated["service_name"]


def test_request_finished_records_of_non_answered_questions_are_in_the_log_store(
    stack: Stack, quality_run: DemoRun
) -> None:
    not_answered = sum(v for k, v in quality_run.summary["outcomes"].items() if k != "answered")
    stream = f"_stream:{{deployment.environment.name={logsql_quote(quality_run.environment)}}}"
    query = f'{stream} _msg:"request finished" -nl2sql.outcome:="answered" | stats count() hits'

    def enough() -> bool:
        rows = stack.logs(query)
        return bool(rows) and int(rows[0]["hits"]) >= not_answered

    wait_until(enough, timeout=60, interval=1, what=f"{not_answered} non-answered request records")


QUALITY = ROOT / "grafana" / "dashboards" / "nl2sql-quality.json"
# The demo's validator ends a rejected request instead of retrying, so it never corrects a query: the
# corrections panel is checked by the unit corpus (nl2sql.correction_attempts), not here.
NEEDS_A_RETRYING_APP = {"Corrected questions (request finished with nl2sql.correction_attempts > 0)"}


def test_quality_dashboard_log_queries_return_the_runs_records(stack: Stack, quality_run: DemoRun) -> None:
    board = json.loads(QUALITY.read_text())
    targets = {
        p["title"]: t["expr"]
        for p in board["panels"]
        for t in p.get("targets", [])
        if (t.get("datasource") or {}).get("uid") == "victorialogs" and p["title"] not in NEEDS_A_RETRYING_APP
    }
    assert len(targets) == 2
    for title, expr in targets.items():
        query = (
            expr.replace('"$env"', logsql_quote(quality_run.environment))
            .replace('"$service"', '".*"')
            .replace('"$tenant"', '".*"')
        )
        assert "$" not in query, query
        wait_until(lambda q=query: stack.logs(q) or None, timeout=60, interval=1, what=f"data for {title!r}")
