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
from nl2sql_observability.demo.catalog import BROKEN_SQL, FAILURE_KINDS, QUESTIONS
from nl2sql_observability.demo.db import ensure_database
from nl2sql_observability.demo.graph import NODE_NAMES, DemoState, build_graph
from nl2sql_observability.demo.llm import SimulatedChatModel
from nl2sql_observability.instrumentation import error_type_of, has_sdk

__all__ = ["DemoOptions", "RequestPlan", "plan_requests", "run_demo"]

_log = logging.getLogger("nl2sql_observability.demo")

JAEGER_URL = "http://127.0.0.1:16686"
GRAFANA_URL = "http://127.0.0.1:3000"
VICTORIALOGS_URL = "http://127.0.0.1:9428"


def _answers(url: str) -> bool:
    """True when a service of the local stack answers at url (0.5 s, never through a proxy)."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=0.5) as resp:
            return int(resp.status) < 500
    except Exception:  # down, refused, timed out: not running
        return False


@dataclass(frozen=True)
class DemoOptions:
    requests: int = 20
    concurrency: int = 4
    tenants: tuple[str, ...] = ("acme", "globex", "initech")
    failure_rate: float = 0.1
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


@dataclass
class RequestResult:
    plan: RequestPlan
    trace_id: str
    answer: str = ""
    error_type: str | None = None
    validation: str | None = None  # passed / failed / None (not reached)
    input_tokens: int = 0
    output_tokens: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)


def plan_requests(opts: DemoOptions) -> list[RequestPlan]:
    """Per-request randomness comes from (seed, index) alone, so plans do not depend on concurrency."""
    questions = list(QUESTIONS)
    plans = []
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
        plans.append(RequestPlan(index, user, question, failure_sql))
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

        llm = SimulatedChatModel(
            seed=f"{opts.seed}:{plan.index}", failure_sql=plan.failure_sql, time_scale=opts.time_scale
        )
        # Who asks travels the way LangGraph apps pass it: in the run config (and in the state).
        config = {
            "configurable": {
                "llm": llm,
                "report_trace_id": report_trace_id,
                "tenant_id": plan.user.tenant_id,
                "user_id": plan.user.user_id,
                "thread_id": plan.user.session_id,
            }
        }
        try:
            final = await graph.ainvoke(
                DemoState(user_context=plan.user, index=plan.index, question=plan.question), config=config
            )
        except Exception as exc:  # the request fails; the demo goes on
            result.error_type = error_type_of(exc)
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
            result.answer = f"Sorry, the generated SQL was rejected ({result.error_type})."
        else:
            result.answer = str(final.get("answer", ""))
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
        from nl2sql_observability.configurator import configure

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
    return {
        "requests": len(results),
        "failures": dict(sorted(failures.items())),
        "validations": {
            "passed": sum(1 for r in results if r.validation == "passed"),
            "failed": sum(1 for r in results if r.validation == "failed"),
        },
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


def format_summary(summary: dict[str, Any]) -> str:
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
    lines.append("  node latency (ms, measured locally):")
    for name, q in summary["node_latency_ms"].items():
        lines.append(f"    {name:<14} p50 {q['p50']:>9.1f}   p95 {q['p95']:>9.1f}")
    lines.append("  tokens per tenant:")
    for tenant, t in summary["tokens_by_tenant"].items():
        lines.append(f"    {tenant:<14} input {t['input']:>7}   output {t['output']:>7}")
    sample = (summary["failed_trace_ids"] or summary["trace_ids"] or [""])[0]
    where = [  # printed only for the services that answer
        (f"{JAEGER_URL}/", f"Jaeger        {JAEGER_URL}/trace/{sample}   (sample trace id {sample})"),
        (
            f"{VICTORIALOGS_URL}/health",
            f"VictoriaLogs  {VICTORIALOGS_URL}/select/vmui/#/?query=trace_id:{sample}   (its log lines)",
        ),
        (f"{GRAFANA_URL}/api/health", f"Grafana       {GRAFANA_URL}  (dashboards: NL2SQL)"),
    ]
    running = [line for url, line in where if _answers(url)]
    lines.append(f"  sample trace id: {sample}")
    lines.append("  where to look:" if running else "  where to look: no stack answers (start it: make up)")
    lines += [f"    {line}" for line in running]
    return "\n".join(lines)


def write_summary_json(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
