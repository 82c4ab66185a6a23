"""Faults: the pipeline keeps the app safe and keeps the data (issue 5).

- the collector is not running when the app starts: same answers, no error, about the same time;
- Jaeger is stopped for 30 s mid-run and started again: no span lost (the collector's persistent
  queue delivers them);
- the collector is restarted mid-run: the app recovers without restarting;
- Prometheus is restarted: its data is still there.

These run last (they stop and start services of the shared stack) and leave it healthy.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from demo import DemoRun, demo
from stackkit import FIGURES, Stack, parent_id, wait_until
from test_2_demo import wait_for_traces

OUTAGE_S = 30.0


def _started_traces(stack: Stack, run: DemoRun, at_least: int) -> None:
    """Wait until the running demo has at least N traces in Jaeger (so a fault lands mid-run)."""
    since = int(run.started * 1e6)

    def enough() -> bool:
        assert run.proc is not None
        assert run.proc.poll() is None, "the demo finished before the fault was injected"
        return len(stack.traces("nl2sql", start=since, limit=2000)) >= at_least

    wait_until(enough, timeout=60, interval=0.5, what=f"{at_least} traces of the running demo")


def _token_totals(stack: Stack, env: str) -> dict[tuple[str, str], int]:
    rows = stack.query(
        "sum by (tenant_id, gen_ai_token_type) "
        f'(nl2sql_llm_tokens_total{{deployment_environment_name="{env}"}})'
    )
    return {
        (r["metric"]["tenant_id"], r["metric"]["gen_ai_token_type"]): round(float(r["value"][1]))
        for r in rows
    }


def _expected_tokens(run: DemoRun) -> dict[tuple[str, str], int]:
    return {
        (tenant, kind): int(v[kind])
        for tenant, v in run.summary["tokens_by_tenant"].items()
        for kind in ("input", "output")
    }


def _complete(trace: dict) -> bool:
    """No span missing: every parent a span refers to is in the trace, and there is one root."""
    ids = {s["spanID"] for s in trace["spans"]}
    parents = [parent_id(s) for s in trace["spans"]]
    return sum(p is None for p in parents) == 1 and all(p in ids for p in parents if p is not None)


def test_collector_down_when_the_app_starts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    kwargs = {"requests": 30, "concurrency": 4, "failure_rate": 0.1, "seed": 21, "time_scale": 0.2}
    baseline = demo(stack, tmp_path_factory.mktemp("fault-baseline"), **kwargs).start().wait().check()
    stack.stop("collector")
    try:
        blind = demo(stack, tmp_path_factory.mktemp("fault-nocollector"), **kwargs).start().wait().check()
    finally:
        stack.start("collector")
        stack.wait_healthy("collector")
    assert blind.summary["answers"] == baseline.summary["answers"]
    assert blind.summary["failures"] == baseline.summary["failures"]
    assert blind.summary["tokens_by_tenant"] == baseline.summary["tokens_by_tenant"]
    assert "Traceback" not in blind.stderr + blind.stdout
    FIGURES.put(
        "demo with the collector down",
        f"run {blind.summary['elapsed_s']:.1f}s vs {baseline.summary['elapsed_s']:.1f}s with it up; "
        f"process {blind.wall_s:.1f}s vs {baseline.wall_s:.1f}s (incl. the bounded exit flush; 30 questions)",
    )
    assert blind.wall_s <= baseline.wall_s * 1.5 + 3.0, (blind.wall_s, baseline.wall_s)


def test_jaeger_stopped_for_30s_loses_no_span(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = demo(
        stack,
        tmp_path_factory.mktemp("fault-jaeger"),
        requests=40,
        concurrency=2,
        failure_rate=0.1,
        seed=31,
        time_scale=1.0,
    ).start()
    _started_traces(stack, run, at_least=3)
    stack.stop("jaeger")
    # the outage itself, a set duration (not a wait for a condition): the demo keeps sending meanwhile
    time.sleep(OUTAGE_S)
    stack.start("jaeger")
    stack.wait_healthy("jaeger")
    run.wait().check()
    assert "Traceback" not in run.stderr + run.stdout
    t0 = time.monotonic()
    traces = wait_for_traces(stack, run.summary["trace_ids"], timeout=180)
    # every LLM call's span, named in the audit log, must reach Jaeger too. A trace can look complete
    # (one root, no dangling parent) while a batch holding only leaf spans still waits in the
    # collector's retry backoff (up to 30 s between attempts), so wait for the audited spans as well.
    events = [json.loads(x) for x in run.audit_path.read_text().splitlines() if x.strip()]
    assert events
    audited: dict[str, set[str]] = {}
    for e in events:
        audited.setdefault(e["trace_id"], set()).add(e["span_id"])
    complete_after: list[float] = []

    def all_delivered() -> bool:
        for tid in set(run.summary["trace_ids"]) | set(audited):
            t = stack.trace(tid)
            if t is None or not _complete(t):
                return False
            traces[tid] = t
        if not complete_after:
            complete_after.append(time.monotonic() - t0)
        missing = {
            tid: sorted(want - {s["spanID"] for s in traces[tid]["spans"]})
            for tid, want in audited.items()
            if want - {s["spanID"] for s in traces[tid]["spans"]}
        }
        assert not missing, f"audited spans not in Jaeger yet: {missing}"
        return True

    wait_until(
        all_delivered, timeout=180, interval=2, what="every trace and audited span after the Jaeger outage"
    )
    FIGURES.put(
        "Jaeger outage 30s: queued spans delivered",
        f"traces complete {complete_after[0]:.1f}s, every audited span {time.monotonic() - t0:.1f}s "
        "after the demo ended",
    )


def test_collector_restart_mid_run_app_recovers(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = demo(
        stack,
        tmp_path_factory.mktemp("fault-collector-restart"),
        requests=30,
        concurrency=2,
        failure_rate=0.1,
        seed=41,
        time_scale=1.0,
    ).start()
    _started_traces(stack, run, at_least=3)
    stack.restart("collector")
    stack.wait_healthy("collector")
    back = time.time()
    assert run.proc is not None
    assert run.proc.poll() is None, "the demo should still be running after the collector restart"
    run.wait().check()
    assert "Traceback" not in run.stderr + run.stdout
    ids = run.summary["trace_ids"]
    # the audit log dates every LLM call: questions whose LLM call started after the collector was
    # back (plus 1 s) must all be in Jaeger; the ones in flight during the restart are counted
    events = [json.loads(x) for x in run.audit_path.read_text().splitlines() if x.strip()]
    first_call: dict[str, float] = {}
    for e in events:
        ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        first_call[e["trace_id"]] = min(ts, first_call.get(e["trace_id"], ts))
    later = [tid for tid in ids if first_call.get(tid, 0) > back + 1]
    assert later, "no question started after the collector came back"
    wait_for_traces(stack, later, timeout=120)
    present = sum(1 for tid in ids if stack.trace(tid) is not None)
    FIGURES.put(
        "collector restart mid-run",
        f"{present}/{len(ids)} traces in Jaeger; all {len(later)} begun after the restart",
    )
    # metrics are cumulative: the totals after the restart equal the demo's own
    expected = _expected_tokens(run)
    wait_until(lambda: _token_totals(stack, run.environment) == expected, timeout=90, what="token totals")


def test_prometheus_restart_keeps_its_data(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = demo(stack, tmp_path_factory.mktemp("fault-prom"), requests=20, seed=51, time_scale=0.05)
    run.start().wait().check()
    expected = _expected_tokens(run)
    wait_until(lambda: _token_totals(stack, run.environment) == expected, timeout=90, what="token totals")
    at = time.time()
    expr = 'count({__name__=~"nl2sql_.+"})'
    before_count = stack.scalar(expr, at)
    before_tokens = _token_totals(stack, run.environment)
    stack.restart("prometheus")
    stack.wait_healthy("prometheus")
    wait_until(lambda: stack.query("up"), timeout=60, what="Prometheus answering")
    assert stack.scalar(expr, at) == before_count
    rows = stack.query(
        "sum by (tenant_id, gen_ai_token_type) "
        f'(nl2sql_llm_tokens_total{{deployment_environment_name="{run.environment}"}})',
        at,
    )
    after = {
        (r["metric"]["tenant_id"], r["metric"]["gen_ai_token_type"]): round(float(r["value"][1]))
        for r in rows
    }
    assert after == before_tokens == expected
