"""What cost per tenant adds to one LLM call, and what a price lookup costs.

Same process, same SDK providers (batch span processor to an exporter that drops, a metric reader
never collected), audit log off on both sides. Rounds alternate:
- with cost: `llm_call(...)` for a priced model (lookup, `nl2sql.llm.cost` add, two span attributes);
- baseline:  the same `llm_call(...)` with the cost step switched off.
Also a cached `PriceTable.lookup` against a plain `dict.get` of the same price (the floor).
Figures: median per-call times and the ratios. Goal: the cost step adds less than 0.1% to a 50 ms
LLM round trip (< 50 us per call); the ratio against the bare instrumentation is printed as it is.
Run: `.venv/bin/python benchmarks/bench_cost.py`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence

from nl2sql_observability import audit, instrumentation, llm
from nl2sql_observability.context import UserContext, user_context
from nl2sql_observability.instrumentation import llm_call, node
from nl2sql_observability.instruments import get_instruments
from nl2sql_observability.pricing import load_price_table, use_price_table
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

MODEL = "gpt-4o-2024-08-06"  # priced through its release suffix: the slower lookup path, then cached


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main(calls: int = 2_000, rounds: int = 21) -> float:
    """Returns the microseconds the cost step adds to one call."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=1_000_000))
    instrumentation.use_providers(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    audit.submit = lambda record: True  # the audit log is not what is measured here
    table = load_price_table({})
    use_price_table(table)
    ins = get_instruments()
    cost, unpriced = llm._cost, ins.unpriced_tokens

    class _NoCounter:
        def add(self, *args: object, **kwargs: object) -> None:
            pass

    def use_cost(on: bool) -> None:
        """The cost step on, or off: no lookup, no cost counter, no span attributes (and no unpriced
        count in its place)."""
        llm._cost = cost if on else (lambda model, i, o: None)  # type: ignore[assignment]
        ins.unpriced_tokens = unpriced if on else _NoCounter()  # type: ignore[assignment]

    def one_call() -> None:
        with llm_call(model=MODEL, provider="openai") as call:
            call.set_response("SELECT 1", input_tokens=1200, output_tokens=80)

    ours, base = [], []
    with user_context(UserContext(tenant_id="acme")), node("generate_sql"):
        for i in range(rounds):
            # alternate which side goes first: background export and GC do not favour either
            for side in ("ours", "base") if i % 2 == 0 else ("base", "ours"):
                use_cost(side == "ours")
                (ours if side == "ours" else base).append(_per_call(one_call, calls))
    use_cost(True)

    price = table.lookup(MODEL)
    plain = {MODEL: price}
    lookups, gets = [], []
    for _ in range(rounds):
        lookups.append(_per_call(lambda: table.lookup(MODEL), calls * 20))
        gets.append(_per_call(lambda: plain.get(MODEL), calls * 20))
    tracer_provider.shutdown()

    ours_us, base_us = statistics.median(ours) * 1e6, statistics.median(base) * 1e6
    call_ratio = ours_us / base_us
    print(
        f"llm_call with cost {ours_us:.1f} us, without {base_us:.1f} us: ratio {call_ratio:.3f},"
        f" +{ours_us - base_us:.1f} us per call (goal < 50 us: 0.1% of a 50 ms LLM call)"
    )
    lookup_ns, get_ns = statistics.median(lookups) * 1e9, statistics.median(gets) * 1e9
    print(
        f"cached price lookup {lookup_ns:.0f} ns vs dict.get {get_ns:.0f} ns: ratio {lookup_ns / get_ns:.2f}"
    )
    return ours_us - base_us


if __name__ == "__main__":
    sys.exit(0 if main() < 50 else 1)
