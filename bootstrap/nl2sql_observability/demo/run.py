"""Running the demo: plan the requests (seeded), run them concurrently, summarise."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nl2sql_observability.context import UserContext
from nl2sql_observability.demo.catalog import (
    BROKEN_SQL,
    FAILURE_KINDS,
    QUESTIONS,
    RUNTIME_FAILURES,
    RUNTIME_SQL,
)
from nl2sql_observability.demo.db import ensure_database
from nl2sql_observability.demo.graph import NODE_NAMES, DemoState, build_graph
from nl2sql_observability.demo.links import StackUrls, where_to_look
from nl2sql_observability.demo.llm import SimulatedChatModel
from nl2sql_observability.instrumentation import error_type_of, has_sdk

__all__ = ["DEMO_SERVICE_NAME", "DemoOptions", "RequestPlan", "plan_requests", "run_demo"]

_log = logging.getLogger("nl2sql_observability.demo")

# What plain `nl2sql-obs demo` names itself when OTEL_SERVICE_NAME is unset (`make demo` sets it too).
DEMO_SERVICE_NAME = "nl2sql-demo"


@dataclass(frozen=True)
class DemoOptions:
    requests: int = 20
    concurrency: int = 4
    tenants: tuple[str, ...] = ("acme", "globex", "initech")
    failure_rate: float = 0.1
    error_rate: float = 0.0  # questions that fail past validation: sql_error, timeout, llm_error
    feedback_rate: float = 0.0  # answers the (simulated) users rate afterwards
    seed: int = 42
    time_scale: float = 1.0
    db: Path | None = None
    questions: tuple[str, ...] = ()
    progress: bool = True


@dataclass(frozen=True)
class RequestPlan:
    index: int
    user: UserContext
    question: str
    failure_sql: str | None
    runtime_failure: str | None = None  # one of RUNTIME_FAILURES


@dataclass
class RequestResult:
    plan: RequestPlan
    trace_id: str
    answer: str = ""
    error_type: str | None = None
    validation: str | None = None  # passed / failed / None (not reached)
    outcome: str = "answered"  # how the app itself saw the question end (nl2sql.outcome's set)
    input_tokens: int = 0
    output_tokens: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    llm_calls: list[tuple[str, int, int]] = field(default_factory=list)  # (node, input, output tokens)


def plan_requests(opts: DemoOptions) -> list[RequestPlan]:
    """Per-request randomness comes from (seed, index) alone, so plans do not depend on concurrency."""
    questions = list(QUESTIONS)
    plans = []
    runtime_failures = 0
    for index in range(opts.requests):
        rng = random.Random(f"{opts.seed}:{index}")  # noqa: S311 - simulation, not crypto
        tenant = opts.tenants[index % len(opts.tenants)]
        user = UserContext(
            tenant_id=tenant,
            user_id=f"user-{rng.randrange(1, 25):02d}",
            session_id=f"sess-{opts.seed}-{index // 4:04d}",
            roles=("analyst",),
        )
        question = rng.choice(questions)
        failure_sql = None
        if rng.random() < opts.failure_rate:
            failure_sql = rng.choice(BROKEN_SQL[rng.choice(FAILURE_KINDS)])
        runtime_failure = None
        # drawn after the draws above, so plans without runtime failures stay what they were
        if failure_sql is None and opts.error_rate and rng.random() < opts.error_rate:
            # in turn, so even a short run has each kind (a SQL error first)
            runtime_failure = RUNTIME_FAILURES[runtime_failures % len(RUNTIME_FAILURES)]
            runtime_failures += 1
            failure_sql = RUNTIME_SQL.get(runtime_failure)
        plans.append(RequestPlan(index, user, question, failure_sql, runtime_failure))
    for extra in opts.questions:  # asked once each, by the first tenant, never failure-injected
        index = len(plans)
        user = UserContext(
            tenant_id=opts.tenants[0],
            user_id="user-cli",
            session_id=f"sess-{opts.seed}-cli",
            roles=("analyst",),
        )
        plans.append(RequestPlan(index, user, extra, None))
    return plans


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return round(ordered[rank], 3)


async def _run_one(plan: RequestPlan, graph: Any, opts: DemoOptions, sem: asyncio.Semaphore) -> RequestResult:
    async with sem:
        result = RequestResult(plan, trace_id="")

        def report_trace_id(trace_id: str) -> None:
            result.trace_id = trace_id

        def report_usage(node: str, input_tokens: int, output_tokens: int) -> None:
            result.llm_calls.append((node, input_tokens, output_tokens))

        llm = SimulatedChatModel(
            seed=f"{opts.seed}:{plan.index}",
            failure_sql=plan.failure_sql,
            fail_sql_call=plan.runtime_failure == "llm_error",
            time_scale=opts.time_scale,
        )
        # Who asks travels the way LangGraph apps pass it: in the run config (and in the state).
        config = {
            "configurable": {
                "llm": llm,
                "report_trace_id": report_trace_id,
                "report_usage": report_usage,
                "tenant_id": plan.user.tenant_id,
                "user_id": plan.user.user_id,
                "thread_id": plan.user.session_id,
                "time_scale": opts.time_scale,
            }
        }
        try:
            final = await graph.ainvoke(
                DemoState(user_context=plan.user, index=plan.index, question=plan.question), config=config
            )
        except Exception as exc:  # the request fails; the demo goes on
            result.error_type = error_type_of(exc)
            result.outcome = "llm_error" if plan.runtime_failure == "llm_error" else "error"
            _log.warning("request failed", extra={"error_type": result.error_type})
            return result
        result.input_tokens = int(final.get("input_tokens", 0))
        result.output_tokens = int(final.get("output_tokens", 0))
        result.timings_ms = dict(final.get("timings_ms", {}))
        error_type = final.get("error_type")
        if "validate_sql" in result.timings_ms:
            result.validation = "failed" if error_type else "passed"
        if error_type:
            result.error_type = str(error_type)
            result.outcome = "validation_rejected"
            result.answer = f"Sorry, the generated SQL was rejected ({result.error_type})."
        else:
            result.answer = str(final.get("answer", ""))
            if final.get("db_error"):
                result.outcome = plan.runtime_failure or "sql_error"
                result.error_type = result.outcome
            elif not final.get("rows"):
                result.outcome = "empty_result"
        return result


async def _run_all(opts: DemoOptions, plans: list[RequestPlan], db_path: Path) -> list[RequestResult]:
    graph = build_graph(db_path)
    sem = asyncio.Semaphore(opts.concurrency)
    tasks = [asyncio.ensure_future(_run_one(p, graph, opts, sem)) for p in plans]
    show = opts.progress and sys.stdout.isatty()
    if not show:
        return list(await asyncio.gather(*tasks))
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        bar = progress.add_task("asking questions", total=len(tasks))
        for fut in asyncio.as_completed(tasks):
            await fut
            progress.advance(bar)
    return [t.result() for t in tasks]


def _ensure_telemetry() -> None:
    """Plain `nl2sql-obs demo` (no `opentelemetry-instrument`): configure the SDK and load the
    instrumentors ourselves, as an app that calls `configure()` does. Under the launcher both are done."""
    if not has_sdk():
        import os

        from nl2sql_observability.configurator import configure

        if not os.environ.get("OTEL_SERVICE_NAME", "").strip():  # the demo is never merged into an app
            os.environ["OTEL_SERVICE_NAME"] = DEMO_SERVICE_NAME
        configure()
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor

    for instrumentor in (Nl2sqlInstrumentor(), SQLite3Instrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """Run the demo and return the machine-readable summary."""
    _ensure_telemetry()
    db_path = ensure_database(opts.db)
    plans = plan_requests(opts)
    start = time.perf_counter()
    results = asyncio.run(_run_all(opts, plans, db_path))
    elapsed = time.perf_counter() - start

    tokens: dict[str, dict[str, int]] = defaultdict(lambda: {"input": 0, "output": 0})
    timings: dict[str, list[float]] = defaultdict(list)
    for r in results:
        bucket = tokens[r.plan.user.tenant_id]
        bucket["input"] += r.input_tokens
        bucket["output"] += r.output_tokens
        for name, ms in r.timings_ms.items():
            timings[name].append(ms)
    failures = Counter(r.error_type for r in results if r.error_type is not None)
    service, environment = _service_and_environment()
    feedback = _send_feedback(opts, results)
    return {
        "service": service,
        "environment": environment,
        "audit_path": _audit_path(),
        "requests": len(results),
        "requests_by_tenant": dict(sorted(Counter(r.plan.user.tenant_id for r in results).items())),
        **_llm_totals(results),
        "failures": dict(sorted(failures.items())),
        "validations": {
            "passed": sum(1 for r in results if r.validation == "passed"),
            "failed": sum(1 for r in results if r.validation == "failed"),
        },
        "outcomes": dict(sorted(Counter(r.outcome for r in results).items())),
        "feedback": feedback,
        "tokens_by_tenant": {t: tokens[t] for t in sorted(tokens)},
        "node_latency_ms": {
            name: {"p50": _percentile(timings[name], 0.5), "p95": _percentile(timings[name], 0.95)}
            for name in NODE_NAMES
            if timings.get(name)
        },
        "trace_ids": [r.trace_id for r in results],
        "failed_trace_ids": [r.trace_id for r in results if r.error_type is not None],
        "answers": [r.answer for r in results],
        "elapsed_s": round(elapsed, 3),
    }


def _llm_totals(results: list[RequestResult]) -> dict[str, Any]:
    """Tokens and cost (the price table the instrumentor uses) per node, tenant and model, from the
    demo's own tally of each LLM call: what the dashboards' totals must show."""
    from nl2sql_observability.pricing import price_table

    price = price_table().lookup(SimulatedChatModel().model_name)
    model = SimulatedChatModel().model_name
    by_node: dict[str, dict[str, int]] = defaultdict(lambda: {"input": 0, "output": 0})
    cost_by_tenant: dict[str, float] = defaultdict(float)
    cost_by_node: dict[str, float] = defaultdict(float)
    cost_by_model: dict[str, float] = defaultdict(float)
    unpriced: dict[str, int] = defaultdict(int)
    for r in results:
        for node, input_tokens, output_tokens in r.llm_calls:
            by_node[node]["input"] += input_tokens
            by_node[node]["output"] += output_tokens
            if price is None:
                unpriced[model] += input_tokens + output_tokens
                continue
            cost = price.cost(input_tokens, output_tokens)
            cost_by_tenant[r.plan.user.tenant_id] += cost
            cost_by_node[node] += cost
            cost_by_model[model] += cost
    return {
        "tokens_by_node": {n: by_node[n] for n in sorted(by_node)},
        "cost_usd_by_tenant": {t: cost_by_tenant[t] for t in sorted(cost_by_tenant)},
        "cost_usd_by_node": {n: cost_by_node[n] for n in sorted(cost_by_node)},
        "cost_usd_by_model": dict(cost_by_model),
        "unpriced_tokens_by_model": dict(unpriced),
    }


def _service_and_environment() -> tuple[str, str]:
    """service.name and deployment.environment.name of the running SDK's resource."""
    from opentelemetry import trace

    from nl2sql_observability import semconv as sc

    attributes = getattr(getattr(trace.get_tracer_provider(), "resource", None), "attributes", {}) or {}
    return (
        str(attributes.get(sc.SERVICE_NAME, sc.DEFAULT_SERVICE_NAME)),
        str(attributes.get(sc.DEPLOYMENT_ENVIRONMENT_NAME, sc.DEFAULT_ENVIRONMENT)),
    )


def _audit_path() -> str | None:
    """Where this run's audit events went (None: audit log off)."""
    from nl2sql_observability.settings import current_settings

    tree = current_settings()
    if tree is None or not tree.audit.enabled:
        return None
    return str(tree.audit.resolved_path())


def _send_feedback(opts: DemoOptions, results: list[RequestResult]) -> dict[str, int]:
    """Users rate some answers afterwards (seeded): thumbs down for most non-answers and a few answers.
    Sent as a web handler would, by trace id only (`record_feedback`)."""
    counts: Counter[str] = Counter()
    if not opts.feedback_rate:
        return {}
    from nl2sql_observability.feedback import FeedbackError, record_feedback, shutdown_emitters

    for r in results:
        rng = random.Random(f"{opts.seed}:{r.plan.index}:feedback")  # noqa: S311 - simulation
        if not r.trace_id or rng.random() >= opts.feedback_rate:
            continue
        unhappy = r.outcome != "answered" or rng.random() < 0.1
        label = "thumbs_down" if unhappy else "thumbs_up"
        try:
            record_feedback(r.trace_id, label=label, comment="not what I asked" if unhappy else None)
        except (FeedbackError, ValueError) as exc:
            _log.warning("feedback not sent: %s", exc)
            break
        counts[label] += 1
    shutdown_emitters()  # export the feedback events and counts now
    return dict(sorted(counts.items()))


def format_summary(summary: dict[str, Any], urls: StackUrls | None = None) -> str:
    """Human-readable summary printed at the end of the demo."""
    validations = summary["validations"]
    lines = [
        "",
        f"nl2sql demo: {summary['requests']} requests in {summary['elapsed_s']:.2f}s",
        f"  validations: {validations['passed']} passed, {validations['failed']} failed",
    ]
    failures = summary["failures"]
    lines.append(
        "  failures: " + (", ".join(f"{k}={v}" for k, v in failures.items()) if failures else "none")
    )
    outcomes = summary.get("outcomes") or {}
    lines.append("  outcomes: " + ", ".join(f"{k}={v}" for k, v in outcomes.items()))
    if summary.get("feedback"):
        lines.append("  feedback sent: " + ", ".join(f"{k}={v}" for k, v in summary["feedback"].items()))
    lines.append("  node latency (ms, measured locally):")
    for name, q in summary["node_latency_ms"].items():
        lines.append(f"    {name:<14} p50 {q['p50']:>9.1f}   p95 {q['p95']:>9.1f}")
    lines.append("  per tenant:        requests   input tokens   output tokens   cost (USD)")
    costs = summary["cost_usd_by_tenant"]
    for tenant, t in summary["tokens_by_tenant"].items():
        cost = f"{costs[tenant]:>10.6f}" if tenant in costs else "  unpriced"
        requests = summary["requests_by_tenant"].get(tenant, 0)
        lines.append(f"    {tenant:<14} {requests:>8}   {t['input']:>12}   {t['output']:>13}   {cost}")
    for model, unpriced in summary["unpriced_tokens_by_model"].items():
        lines.append(f"    model {model} has no price: {unpriced} tokens without cost")
    sample = (summary["failed_trace_ids"] or summary["trace_ids"] or [""])[0]
    audit_path = summary.get("audit_path")
    where = where_to_look(
        urls or StackUrls(),
        sample,
        service=summary["service"],
        environment=summary["environment"],
        audit_path=None if audit_path is None else Path(audit_path),
    )
    lines.append(
        f"  service {summary['service']}, environment {summary['environment']}, sample trace id {sample}"
    )
    if not any(line.startswith(("trace", "logs", "cost", "dashboards")) for line in where):
        lines.append("  no stack answers (start it: make up)")
    lines.append("  where to look:")
    lines += [f"    {line}" for line in where]
    return "\n".join(lines)


def write_summary_json(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
