"""Added cost per graph node: zero-code instrumentor vs the explicit `@node` path vs OpenInference.

One process, one graph shape (a linear LangGraph of NODES trivial nodes, invoked with a tenant in its
config), four ways, rounds alternating between them:
- bare:          no instrumentation at all (the baseline);
- explicit:      each node function decorated with `@node(name)`, the call in `workflow()`;
- zero-code:     the same undecorated graph with `Nl2sqlInstrumentor` on;
- openinference: the same undecorated graph with OpenInference's LangChain instrumentor on.
All spans go to the same kind of SDK pipeline (batch processor, exporter that drops). The figure is
the median time per invoke; added cost per node = (mode - bare) / NODES. Goals: zero-code adds at
most 1.5x what the explicit path adds, and no more than OpenInference adds.
Run: `.venv/bin/python benchmarks/bench_zero_code.py`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from langgraph.graph import START, StateGraph
from nl2sql_observability import instrumentation, node, workflow
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from typing_extensions import TypedDict

NODES = 8
CONFIG = {"configurable": {"tenant_id": "acme", "thread_id": "t-1", "user_id": "u-1"}}


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class State(TypedDict):
    n: int


def _graph(decorate: bool) -> Any:
    g = StateGraph(State)
    previous = START
    for i in range(NODES):
        name = f"step_{i}"

        def step(state: State) -> dict[str, int]:
            return {"n": state["n"] + 1}

        g.add_node(name, node(name)(step) if decorate else step)
        g.add_edge(previous, name)
        previous = name
    return g.compile()


def _timed(call: Callable[[], Any], invokes: int) -> float:
    samples = []
    for _ in range(invokes):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(invokes: int = 300, rounds: int = 7) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=1_000_000))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentation.use_providers(tracer_provider, meter_provider)
    bare, decorated = _graph(False), _graph(True)

    def explicit() -> None:
        with workflow():
            decorated.invoke({"n": 0}, config=CONFIG)

    ours = Nl2sqlInstrumentor()
    try:
        from openinference.instrumentation.langchain import LangChainInstrumentor
    except ImportError:
        LangChainInstrumentor = None
    other = LangChainInstrumentor() if LangChainInstrumentor is not None else None

    modes: dict[str, tuple[Callable[[], Any], Callable[[], None], Callable[[], None]]] = {
        "bare": (lambda: bare.invoke({"n": 0}, config=CONFIG), lambda: None, lambda: None),
        "explicit": (explicit, lambda: None, lambda: None),
        "zero-code": (
            lambda: bare.invoke({"n": 0}, config=CONFIG),
            lambda: ours.instrument(settings=InstrumentorSettings()),
            ours.uninstrument,
        ),
    }
    if other is not None:
        modes["openinference"] = (
            lambda: bare.invoke({"n": 0}, config=CONFIG),
            lambda: other.instrument(tracer_provider=tracer_provider),
            other.uninstrument,
        )
    results: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode, (call, setup, teardown) in modes.items():
            setup()
            try:
                call()  # warm-up
                results[mode].append(_timed(call, invokes))
            finally:
                teardown()
    median = {m: statistics.median(v) for m, v in results.items()}
    added = {m: (median[m] - median["bare"]) / NODES for m in median}
    print(f"graph of {NODES} nodes, median of {rounds} rounds x {invokes} invokes")
    for mode in median:
        per_invoke, per_node = median[mode] * 1e3, added[mode] * 1e6
        print(f"  {mode:<14} {per_invoke:8.3f} ms per invoke   added per node {per_node:7.1f} µs")
    print(f"zero-code / explicit added cost: {added['zero-code'] / added['explicit']:.2f}x (goal <= 1.5)")
    if "openinference" in added:
        ratio = added["zero-code"] / added["openinference"]
        print(f"zero-code / openinference added cost: {ratio:.2f}x (goal <= 1.0)")
    else:
        print("openinference-instrumentation-langchain is not installed: no comparison")


if __name__ == "__main__":
    main()
