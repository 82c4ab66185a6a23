"""Overhead of our node wrapper vs the same work instrumented by hand with the raw SDK.

Both sides use the same SDK providers in one process: a TracerProvider with a batch processor
(exporter that drops), a MeterProvider with a reader that is never collected. Per call:
- ours: a function decorated with `@node("generate_sql")` (span, histogram with tenant from context,
  error handling, current-node contextvar);
- raw:  `start_as_current_span` + one histogram record + one counter add, written by hand.
Rounds alternate between the two; the figure is the median per-call time of each, and the ratio
ours/raw (goal: <= 1.10).  Run: `.venv/bin/python benchmarks/bench_instrumentation.py`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence

from nl2sql_observability import instrumentation
from nl2sql_observability.context import UserContext, user_context
from nl2sql_observability.instrumentation import node
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def work() -> int:
    total = 0
    for i in range(20):
        total += i * i
    return total


def main(calls: int = 20_000, rounds: int = 9) -> float:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=1_000_000))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentation.use_providers(tracer_provider, meter_provider)

    tracer = tracer_provider.get_tracer("bench")
    meter = meter_provider.get_meter("bench")
    hist = meter.create_histogram("raw.node.duration", unit="s")
    counter = meter.create_counter("raw.node.calls")

    @node("generate_sql")
    def ours() -> int:
        return work()

    def raw() -> int:
        with tracer.start_as_current_span(
            "node generate_sql", kind=SpanKind.INTERNAL, attributes={"nl2sql.node.name": "generate_sql"}
        ):
            start = time.perf_counter()
            result = work()
            attrs = {"nl2sql.node.name": "generate_sql", "tenant.id": "acme"}
            hist.record(time.perf_counter() - start, attrs)
            counter.add(1, attrs)
            return result

    def raw_no_counter() -> int:
        with tracer.start_as_current_span(
            "node generate_sql", kind=SpanKind.INTERNAL, attributes={"nl2sql.node.name": "generate_sql"}
        ):
            start = time.perf_counter()
            result = work()
            attrs = {"nl2sql.node.name": "generate_sql", "tenant.id": "acme"}
            hist.record(time.perf_counter() - start, attrs)
            return result

    def per_call(fn: Callable[[], int]) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    def bare() -> int:
        return work()

    samples: dict[str, list[float]] = {"ours": [], "raw": [], "raw_span_hist": [], "bare": []}
    with user_context(UserContext(tenant_id="acme", user_id="u-1")):
        for fn in (ours, raw):  # warm-up
            per_call(fn)
        for i in range(rounds):
            order = (("ours", ours), ("raw", raw)) if i % 2 == 0 else (("raw", raw), ("ours", ours))
            for name, fn in order:
                samples[name].append(per_call(fn))
            samples["raw_span_hist"].append(per_call(raw_no_counter))
            samples["bare"].append(per_call(bare))
    tracer_provider.shutdown()
    meter_provider.shutdown()
    instrumentation.use_providers()

    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio = med["ours"] / med["raw"]
    print(f"calls per round: {calls}, rounds: {rounds}, python {sys.version.split()[0]}")
    print(f"bare work      : {med['bare'] * 1e6:8.2f} us/call")
    print(f"raw SDK        : {med['raw'] * 1e6:8.2f} us/call (span + histogram + counter)")
    print(f"raw SDK        : {med['raw_span_hist'] * 1e6:8.2f} us/call (span + histogram only)")
    print(f"ours (@node)   : {med['ours'] * 1e6:8.2f} us/call")
    print(f"ratio ours/raw(span+histogram) : {med['ours'] / med['raw_span_hist']:.3f}")
    print(f"ratio ours/raw : {ratio:.3f}  (goal <= 1.10)")
    return ratio


if __name__ == "__main__":
    main()
