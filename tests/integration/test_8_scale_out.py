"""The scale-out profile (compose/docker-compose.scale.yml) on the real collectors: an agent that computes
the metrics and routes traces by trace id to two tail-sampling collectors.

Proves issue 17's points with demo runs: every failed and every watched-tenant trace kept, 5-15 % of the
rest; every kept trace complete in Jaeger (no span on the wrong sampler); the request count, failure
ratio and p95 in Prometheus equal the unsampled truth (the demo's summary and audit log, which never
depend on sampling); killing a sampler mid-run loses at most the traces it held and the other takes over.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import yaml
from demo import DemoRun, demo
from nl2sql_observability.audit import Filters
from nl2sql_observability.audit.sinks import JsonlFileSink
from stackkit import (
    BACKENDS,
    COMPOSE_FILE,
    FIGURES,
    ROOT,
    Stack,
    free_port,
    parent_id,
    percentile,
    span_tag,
    wait_until,
)

SCALE_FILE = ROOT / "compose" / "docker-compose.scale.yml"
# The failures come from the validator alone (no SQL, timeout or provider errors, no feedback): every
# trace then holds every node, so a node missing in Jaeger means a span left on the other sampler.
ONLY_VALIDATION_FAILURES = ("--error-rate", "0", "--feedback-rate", "0")
SAMPLERS = ("sampler-1", "sampler-2")
WATCHED = "watched"
TENANTS = ("acme", "globex", "initech", "umbrella", WATCHED)
SHARE_PERCENT = 10
DECISION_WAIT_S = 4
RESOLVE_INTERVAL_S = 1
ROOT_SPAN = "invoke_workflow nl2sql"
# the contract's duration buckets (docs/telemetry-contract.md), as the span_metrics connector has them
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24)
BUCKETS += (20.48, 40.96, 81.92)


@dataclass
class ScaleStack:
    stack: Stack
    metrics_ports: dict[str, int]  # each sampler's own metrics, published on 127.0.0.1 for this test

    def sampler_metric(self, sampler: str, name: str) -> float:
        """Sum of a metric's samples on one sampler's /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_ports[sampler]}/metrics"
        text = self.stack.session.get(url, timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in {"{", " "}:
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def scale(
    stack_factory: Callable[..., contextlib.AbstractContextManager[Stack]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ScaleStack]:
    ports = {name: free_port() for name in SAMPLERS}
    publish = tmp_path_factory.mktemp("scale") / "sampler-metrics.yml"
    publish.write_text(
        yaml.safe_dump({"services": {n: {"ports": [f"127.0.0.1:{p}:8888"]} for n, p in ports.items()}})
    )
    settings = {
        "NL2SQL_SAMPLING_PERCENT": str(SHARE_PERCENT),
        "NL2SQL_SAMPLING_WATCH_TENANTS": f"[{WATCHED}]",
        "NL2SQL_SAMPLING_DECISION_WAIT": f"{DECISION_WAIT_S}s",
        "NL2SQL_SAMPLER_RESOLVE_INTERVAL": f"{RESOLVE_INTERVAL_S}s",
    }
    with stack_factory(
        files=[COMPOSE_FILE, SCALE_FILE, publish],
        services=(*BACKENDS, *SAMPLERS),
        extra_env=settings,
        label="scale-out stack",
    ) as s:
        yield ScaleStack(s, ports)


def undecided(scale: ScaleStack, samplers: tuple[str, ...] = SAMPLERS) -> float:
    return sum(
        scale.sampler_metric(n, "otelcol_processor_tail_sampling_sampling_traces_on_memory") for n in samplers
    )


def kept_traces(stack: Stack, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for tid in trace_ids:
        trace = stack.trace(tid)
        if trace:
            out[tid] = trace
    return out


def settle(scale: ScaleStack, run: DemoRun, samplers: tuple[str, ...] = SAMPLERS) -> None:
    """Wait until the samplers hold no trace (every one decided) and Jaeger stops growing."""
    wait_until(lambda: undecided(scale, samplers) == 0, timeout=DECISION_WAIT_S * 6 + 30, what="decisions")
    seen: list[int] = []

    def stable() -> bool:
        seen.append(len(kept_traces(scale.stack, run.summary["failed_trace_ids"])))
        return len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]

    wait_until(stable, timeout=60, interval=2, what="Jaeger to stop growing")


def incomplete(trace: dict[str, Any]) -> str | None:
    """Why a trace in Jaeger is not the whole question, or None. A question's trace is one root
    (the workflow span), every span's parent present, node spans for schema lookup, SQL generation and
    validation, a chat span under generate_sql, and, when the SQL passed, execution with its DB span and
    the answer. A span left on another sampler shows as a missing parent or a missing node."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    names = sorted(s["operationName"] for s in spans.values())
    roots = [s for s in spans.values() if parent_id(s) is None]
    if [r["operationName"] for r in roots] != [ROOT_SPAN]:
        return f"roots {[r['operationName'] for r in roots]}: {names}"
    orphans = [s["operationName"] for s in spans.values() if parent_id(s) not in (None, *spans)]
    if orphans:
        return f"parents missing for {orphans}: {names}"
    nodes = {
        s["operationName"].removeprefix("node "): s
        for s in spans.values()
        if s["operationName"].startswith("node ")
    }
    needed = {"lookup_schema", "generate_sql", "validate_sql"}
    validation = nodes.get("validate_sql")
    if validation is not None and span_tag(validation, "error.type") is None:
        needed |= {"execute_sql", "answer"}
    if needed - set(nodes):
        return f"nodes missing {sorted(needed - set(nodes))}: {names}"
    children = {p: [s for s in spans.values() if parent_id(s) == p] for p in spans}
    if not any(c["operationName"].startswith("chat ") for c in children[nodes["generate_sql"]["spanID"]]):
        return f"no chat span under generate_sql: {names}"
    if "execute_sql" in needed and not children[nodes["execute_sql"]["spanID"]]:
        return f"no DB span under execute_sql: {names}"
    return None


def policies(trace: dict[str, Any]) -> set[str]:
    return {str(p) for s in trace["spans"] if (p := span_tag(s, "tailsampling.policy")) is not None}


@dataclass
class MainRun:
    run: DemoRun
    kept: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def main_run(scale: ScaleStack, tmp_path_factory: pytest.TempPathFactory) -> MainRun:
    """760 questions, 5 tenants (one watched), 15 % failing, through the agent and both samplers."""
    run = demo(
        scale.stack,
        tmp_path_factory.mktemp("demo-scale"),
        requests=760,
        concurrency=8,
        tenants=TENANTS,
        failure_rate=0.15,
        seed=17,
        time_scale=0.01,
        extra_args=ONLY_VALIDATION_FAILURES,
    )
    run.start().wait(timeout=400).check()
    FIGURES.put("scale-out demo run (760 questions)", f"{run.wall_s:.1f}s wall")
    t0 = time.monotonic()
    settle(scale, run)
    kept = kept_traces(scale.stack, run.summary["trace_ids"])
    FIGURES.put("scale-out: demo end → every decision in Jaeger", f"{time.monotonic() - t0:.1f}s")
    return MainRun(run, kept)


def _tenant(trace: dict[str, Any]) -> str | None:
    return next((str(t) for s in trace["spans"] if (t := span_tag(s, "tenant.id")) is not None), None)


def test_failed_and_watched_traces_kept_and_a_share_of_the_rest(main_run: MainRun) -> None:
    summary = main_run.run.summary
    trace_ids = summary["trace_ids"]
    failed = set(summary["failed_trace_ids"])
    # the demo assigns tenants in turn: request i belongs to TENANTS[i % len(TENANTS)]
    watched = {tid for i, tid in enumerate(trace_ids) if TENANTS[i % len(TENANTS)] == WATCHED}
    # the outcome of every question, from the audit log's per-request records (never sampled)
    outcomes = {str(e["trace_id"]): e.get("outcome") for e in request_records(main_run.run)}
    assert set(outcomes) == set(trace_ids)
    not_answered = {tid for tid in trace_ids if outcomes[tid] != "answered"} - failed
    rest = [tid for tid in trace_ids if tid not in failed | watched | not_answered]
    kept = main_run.kept
    assert len(rest) >= 400, f"only {len(rest)} traces eligible for the probabilistic share"
    assert failed, "a 15 % failure rate over 760 questions should fail some"

    lost_failed = sorted(failed - set(kept))
    assert not lost_failed, f"{len(lost_failed)} of {len(failed)} failed traces not kept: {lost_failed[:5]}"
    lost_not_answered = sorted(not_answered - set(kept))
    assert not lost_not_answered, f"{len(lost_not_answered)} of {len(not_answered)} non-answered traces lost"
    lost_watched = sorted(watched - set(kept))
    assert not lost_watched, f"{len(lost_watched)} of {len(watched)} watched traces not kept"
    share = sum(1 for tid in rest if tid in kept) / len(rest)
    FIGURES.put(
        "scale-out: kept",
        f"failed {len(failed)}/{len(failed)}, not answered {len(not_answered)}/{len(not_answered)}, "
        f"watched {len(watched)}/{len(watched)}, "
        f"rest {share:.1%} of {len(rest)} (share {SHARE_PERCENT}%)",
    )
    assert 0.05 <= share <= 0.15, f"{share:.1%} of the rest kept, expected 5-15 %"

    # the policy that kept a trace is on its spans (feature gate recordpolicy)
    for tid in failed:
        assert policies(kept[tid]) & {"errors", "validation-failed", "not-answered"}, (
            tid,
            policies(kept[tid]),
        )
    for tid in not_answered:
        assert "not-answered" in policies(kept[tid]), (tid, outcomes[tid], policies(kept[tid]))
    for tid in watched - failed - not_answered:
        assert _tenant(kept[tid]) == WATCHED
        assert policies(kept[tid]) == {"watched-tenants"}, (tid, policies(kept[tid]))
    for tid in rest:
        if tid in kept:
            assert policies(kept[tid]) == {"probabilistic"}, (tid, policies(kept[tid]))


def test_every_kept_trace_is_complete_in_jaeger(main_run: MainRun) -> None:
    broken = {tid: why for tid, t in main_run.kept.items() if (why := incomplete(t))}
    FIGURES.put("scale-out: kept traces complete", f"{len(main_run.kept) - len(broken)}/{len(main_run.kept)}")
    assert not broken, f"{len(broken)} incomplete traces, e.g. {next(iter(broken.items()))}"


def histogram_quantile(q: float, values: list[float]) -> float:
    """Prometheus' histogram_quantile over these values bucketed like the span metrics: the truth as a
    dashboard computes it (linear interpolation inside the bucket holding the q-th value)."""
    counts = [sum(1 for v in values if v <= le) for le in BUCKETS]
    rank = q * len(values)
    for i, c in enumerate(counts):
        if c >= rank:
            lo = BUCKETS[i - 1] if i else 0.0
            below = counts[i - 1] if i else 0
            return lo + (BUCKETS[i] - lo) * (rank - below) / max(c - below, 1)
    return BUCKETS[-1]


def request_records(run: DemoRun) -> list[dict[str, Any]]:
    """The audit log's per-request records of the run: one per question, with its outcome."""
    return list(JsonlFileSink(run.audit_path).query(Filters(kind="request")))


def audit_events(run: DemoRun) -> list[dict[str, Any]]:
    """The LLM-call events of the run (not the per-request and feedback records, not the lock file)."""
    events = JsonlFileSink(run.audit_path).query(Filters())
    return [e for e in events if e.get("kind", "llm_call") == "llm_call"]


def test_metrics_equal_the_unsampled_truth(scale: ScaleStack, main_run: MainRun) -> None:
    """Sampling changes no number: counts, failure ratio and p95 are computed before it (the app's
    metrics and the agent's span metrics) and match the demo's own record of every question."""
    s, run = scale.stack, main_run.run
    env = run.environment
    sel = f'deployment_environment_name="{env}"'
    requests_total = int(run.summary["requests"])
    failed = len(run.summary["failed_trace_ids"])

    def count(expr: str) -> int:
        return round(s.scalar(expr) or 0)

    wait_until(
        lambda: count(f"histogram_count(sum(nl2sql_request_duration_seconds{{{sel}}}))") == requests_total,
        timeout=60,
        what=f"{requests_total} requests in Prometheus",
    )
    roots = f'traces_span_metrics_calls_total{{{sel}, span_name="{ROOT_SPAN}"}}'
    wait_until(lambda: count(f"sum({roots})") == requests_total, timeout=60, what="span metrics: every root")
    failed_prom = count(f'histogram_count(sum(nl2sql_request_duration_seconds{{{sel}, error_type!=""}}))')
    failed_spans = count(
        f'sum(traces_span_metrics_calls_total{{{sel}, span_name="node validate_sql", '
        'status_code="STATUS_CODE_ERROR"})'
    )
    kept_ratio = len(main_run.kept) / requests_total
    FIGURES.put(
        "scale-out: requests / failure ratio",
        f"truth {requests_total} / {failed / requests_total:.3f}; Prometheus {count(f'sum({roots})')} / "
        f"{failed_prom / requests_total:.3f} (app), {failed_spans / requests_total:.3f} (span metrics); "
        f"Jaeger keeps {kept_ratio:.1%} of traces",
    )
    assert failed_prom == failed
    assert failed_spans == int(run.summary["validations"]["failed"])

    # p95 of the LLM calls: the audit log has every call (it never depends on sampling)
    truth = [float(e["latency_ms"]) / 1000 for e in audit_events(run)]
    assert len(truth) >= requests_total
    chat = f'traces_span_metrics_duration_seconds_bucket{{{sel}, span_name=~"chat .*"}}'
    chat_count = f'sum(traces_span_metrics_duration_seconds_count{{{sel}, span_name=~"chat .*"}})'
    wait_until(
        lambda: count(chat_count) == len(truth),
        timeout=60,
        what="every chat span in the span metrics",
    )
    p95_prom = s.scalar(f"histogram_quantile(0.95, sum by (le) ({chat}))")
    p95_truth = histogram_quantile(0.95, truth)
    kept_chat = [
        sp["duration"] / 1e6
        for t in main_run.kept.values()
        for sp in t["spans"]
        if sp["operationName"].startswith("chat ")
    ]
    FIGURES.put(
        "scale-out: LLM call p95",
        f"Prometheus {p95_prom:.4f}s, truth {p95_truth:.4f}s "
        f"(bucketed; exact {percentile(truth, 0.95):.4f}s), "
        f"kept traces alone {percentile(kept_chat, 0.95):.4f}s",
    )
    assert p95_prom is not None
    assert abs(p95_prom - p95_truth) <= 0.10 * p95_truth


def test_both_tiers_own_metrics_fill_the_pipeline_row(scale: ScaleStack, main_run: MainRun) -> None:
    """Prometheus scrapes the agent (job otelcol) and both samplers (job otelcol-sampler), and every
    query of the dashboard's scale-out row returns data."""
    s = scale.stack
    wait_until(
        lambda: len(s.query('up{job="otelcol-sampler"} == 1')) == len(SAMPLERS),
        timeout=60,
        what="both samplers scraped",
    )
    board = json.loads((ROOT / "grafana" / "dashboards" / "telemetry-pipeline.json").read_text())
    row = next(i for i, p in enumerate(board["panels"]) if p["type"] == "row" and "Scale-out" in p["title"])
    exprs = [
        t["expr"].replace("$__rate_interval", "1m") for p in board["panels"][row + 1 :] for t in p["targets"]
    ]
    assert exprs
    for expr in exprs:
        wait_until(lambda e=expr: s.query(e), timeout=90, interval=2, what=f"data for {expr}")


def _audit_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def test_killing_a_sampler_loses_at_most_what_it_held(
    scale: ScaleStack, main_run: MainRun, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = scale.stack
    run = demo(
        s,
        tmp_path_factory.mktemp("demo-kill"),
        requests=240,
        concurrency=4,
        failure_rate=0.3,
        seed=23,
        time_scale=0.2,  # long enough that many questions start after the kill
        extra_args=ONLY_VALIDATION_FAILURES,
    )
    sel = f'deployment_environment_name="{run.environment}"'
    run.start()
    wait_until(
        lambda: (s.scalar(f"histogram_count(sum(nl2sql_request_duration_seconds{{{sel}}}))") or 0) >= 80,
        timeout=120,
        what="a third of the run",
    )
    victim = s.container_id("sampler-2")
    subprocess.run(["docker", "update", "--restart", "no", victim], check=True, capture_output=True)
    held = scale.sampler_metric("sampler-2", "otelcol_processor_tail_sampling_sampling_traces_on_memory")
    killed_at = time.time()
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    spans_before = scale.sampler_metric("sampler-1", "otelcol_receiver_accepted_spans")
    run.wait(timeout=400).check()
    settle(scale, run, samplers=("sampler-1",))
    assert s.health("sampler-2") != "healthy", "sampler-2 came back: the test needs it gone"

    failed = run.summary["failed_trace_ids"]
    kept = kept_traces(s, failed)
    lost = {tid for tid in failed if tid not in kept or incomplete(kept[tid])}
    # when each question ran: its LLM calls in the audit log (every question makes one)
    started = {}
    for e in audit_events(run):
        started[e["trace_id"]] = min(started.get(e["trace_id"], float("inf")), _audit_time(e))
    after = [tid for tid in failed if started.get(tid, 0) > killed_at + RESOLVE_INTERVAL_S + 2]
    spans_after = scale.sampler_metric("sampler-1", "otelcol_receiver_accepted_spans")
    FIGURES.put(
        "scale-out: sampler-2 killed mid-run",
        f"it held {held:.0f} traces; failed traces lost {len(lost)} of {len(failed)}; "
        f"failed after the kill kept {sum(1 for t in after if t not in lost)}/{len(after)}; "
        f"sampler-1 took {spans_after - spans_before:.0f} more spans",
    )
    assert len(lost) <= held, f"lost {len(lost)} failed traces, but sampler-2 held only {held:.0f}"
    assert after, "no failed question ran after the kill: the run was too short"
    assert not [t for t in after if t in lost], "traces started after the kill were lost"
    assert spans_after > spans_before
