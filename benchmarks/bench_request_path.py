"""What one LLM call costs the app's thread with the audit log on, against the audit log off.

Same process, same SDK providers (batch span processor to an exporter that drops, a metric reader
never collected), an 8 KB NL2SQL prompt (schema and question) and a reply, tenant and node set. Modes,
in alternating rounds:
- off:    `OBSERVABILITY_AUDIT_ENABLED=false` (the baseline);
- on:     the audit log as shipped: the call's record is queued, the background writer scrubs and writes;
- inline: what the audit log did before (build, scrub and write on the app's thread), for reference.
Between calls the app waits 5 ms (an LLM answers in far more), as a real app waits on the network:
that is when the writer runs. Figure: median wall time of the instrumented block on the caller's
thread, and its CPU time (`time.thread_time`). Goal: on ÷ off ≤ 1.2. Prompts with one secret too.
Run: `.venv/bin/python benchmarks/bench_request_path.py`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nl2sql_observability import instrumentation
from nl2sql_observability.audit import AuditLog, AuditSettings, CallRecord, set_audit_log
from nl2sql_observability.audit.events import event_from_record
from nl2sql_observability.context import UserContext, user_context
from nl2sql_observability.instrumentation import llm_call, node
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

GAP_S = 0.005
SECRET = "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0"


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def nl2sql_prompt(size: int = 8192, secret: bool = False) -> str:
    """An NL2SQL prompt: table definitions and a question (`password_hash`, `api_tokens`, dotted
    numbers: the text that trips scrubbers' prefilters)."""
    tables = []
    i = 0
    while sum(map(len, tables)) < size - 200:
        tables.append(
            f"CREATE TABLE orders_{i} (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),"
            " total NUMERIC(10,2), status TEXT, created_at TIMESTAMP, api_tokens INTEGER,"
            f" password_hash TEXT, version 1.{i}.3);\n"
        )
        i += 1
    question = "Question: which customers spent most in 2026? Use the connection key " + (
        SECRET if secret else "from the vault"
    )
    return ("".join(tables) + question)[:size]


class _InlineLog:
    """The audit log as it was: the event built, scrubbed and written on the app's thread."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def submit(self, record: CallRecord) -> bool:
        assert self._log.sink is not None
        self._log.sink.write(event_from_record(record))
        return True

    def close(self) -> None:
        self._log.close()


def _calls(prompt: str, calls: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(calls):
        time.sleep(GAP_S)
        wall, cpu = time.perf_counter(), time.thread_time()
        with llm_call(model="gpt-4o", provider="openai", prompt=prompt) as call:
            call.set_response(
                "SELECT name FROM customers ORDER BY spent DESC LIMIT 10", input_tokens=2100, output_tokens=40
            )
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return walls, cpus


def main(calls: int = 300, rounds: int = 3) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=1_000_000))
    instrumentation.use_providers(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    with tempfile.TemporaryDirectory() as tmp:
        settings = AuditSettings(path=Path(tmp) / "events.log")
        modes: dict[str, Callable[[], Any]] = {
            "off": lambda: AuditLog(AuditSettings(enabled=False)),
            "on": lambda: AuditLog(settings),
            "inline": lambda: _InlineLog(AuditLog(settings)),
        }
        for secret in (False, True):
            prompt = nl2sql_prompt(secret=secret)
            walls: dict[str, list[float]] = {m: [] for m in modes}
            cpus: dict[str, list[float]] = {m: [] for m in modes}
            with user_context(UserContext(tenant_id="acme")), node("generate_sql"):
                for i in range(rounds):
                    order = list(modes) if i % 2 == 0 else list(reversed(modes))
                    for mode in order:
                        set_audit_log(modes[mode]())
                        try:
                            w, c = _calls(prompt, calls)
                        finally:
                            set_audit_log(None)  # the writer writes what is queued before the next round
                        walls[mode] += w
                        cpus[mode] += c
            wall = {m: statistics.median(v) * 1e6 for m, v in walls.items()}
            cpu = {m: statistics.median(v) * 1e6 for m, v in cpus.items()}
            p99 = {m: statistics.quantiles(v, n=100)[98] * 1e6 for m, v in walls.items()}
            kind = "one secret" if secret else "clean"
            print(f"LLM call, 8 KB prompt ({kind}), caller's thread, median of {rounds}x{calls}:")
            for m in modes:
                print(f"  audit {m:<6} wall {wall[m]:7.1f} us (p99 {p99[m]:7.1f})   cpu {cpu[m]:7.1f} us")
            print(
                f"  audit on / off: wall {wall['on'] / wall['off']:.2f}x, cpu {cpu['on'] / cpu['off']:.2f}x"
                f" (goal <= 1.2); inline (before) / off: wall {wall['inline'] / wall['off']:.1f}x"
            )
    tracer_provider.shutdown()
    instrumentation.use_providers()


if __name__ == "__main__":
    main()
