"""Added cost per graph node: zero-code instrumentor vs the explicit `@node` path vs OpenInference.

One process, one graph shape (a linear LangGraph of NODES trivial nodes, invoked with a tenant in its
config), four ways, rounds alternating between them:
- bare:          no instrumentation at all (the baseline);
- sdk:           the same telemetry written by hand with the bare OTel SDK: a span and a duration
                 histogram per node, a span and a request histogram per invoke (the floor);
- explicit:      each node function decorated with `@node(name)`, the call in `workflow()`;
- zero-code:     the same undecorated graph with `Nl2sqlInstrumentor` on;
- openinference: the same undecorated graph with OpenInference's LangChain instrumentor on.
All spans go to the same kind of SDK pipeline (batch processor, exporter that drops). The figure is
the median time per invoke; added cost per node = (mode - bare) / NODES. Goals: zero-code adds at most
1.2x what the bare SDK adds for the same spans and histograms, at most 1.5x what the explicit path
adds, and no more than OpenInference adds. Then full garbage collections (generation 2) per 10,000
invokes, their count and duration, bare vs zero-code, in a process that does nothing else.
Run: `.venv/bin/python benchmarks/bench_zero_code.py`.
"""

from __future__ import annotations

import gc
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


def _by_hand(name: str, fn: Callable[[State], dict[str, int]], tracer: Any, histogram: Any) -> Any:
    """A node instrumented with the bare SDK: the span and the histogram our instrumentation makes."""
    span_name, attrs = f"node {name}", {"nl2sql.node.name": name}
    metric_attrs = {"nl2sql.node.name": name, "tenant.id": "acme"}

    def wrapped(state: State) -> dict[str, int]:
        start = time.perf_counter()
        with tracer.start_as_current_span(span_name, attributes=attrs):
            result = fn(state)
            histogram.record(time.perf_counter() - start, metric_attrs)
        return result

    return wrapped


def _graph(decorate: bool, sdk: tuple[Any, Any] | None = None) -> Any:
    g = StateGraph(State)
    previous = START
    for i in range(NODES):
        name = f"step_{i}"

        def step(state: State) -> dict[str, int]:
            return {"n": state["n"] + 1}

        if sdk is not None:
            g.add_node(name, _by_hand(name, step, *sdk))
        else:
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
    tracer = tracer_provider.get_tracer("bench")
    meter = meter_provider.get_meter("bench")
    node_histogram = meter.create_histogram("bench.node.duration", unit="s")
    request_histogram = meter.create_histogram("bench.request.duration", unit="s")
    by_hand = _graph(False, (tracer, node_histogram))

    def sdk() -> None:
        start = time.perf_counter()
        with tracer.start_as_current_span(
            "invoke_workflow nl2sql", attributes={"gen_ai.operation.name": "x"}
        ):
            by_hand.invoke({"n": 0}, config=CONFIG)
            request_histogram.record(time.perf_counter() - start, {"tenant.id": "acme"})

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
        "sdk": (sdk, lambda: None, lambda: None),
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
    print(f"zero-code / bare SDK added cost: {added['zero-code'] / added['sdk']:.2f}x (goal <= 1.2)")
    print(f"zero-code / explicit added cost: {added['zero-code'] / added['explicit']:.2f}x (goal <= 1.5)")
    if "openinference" in added:
        ratio = added["zero-code"] / added["openinference"]
        print(f"zero-code / openinference added cost: {ratio:.2f}x (goal <= 1.0)")
    else:
        print("openinference-instrumentation-langchain is not installed: no comparison")
    bare_call, sdk_call = modes["bare"][0], modes["sdk"][0]
    zero_call, zero_setup, zero_teardown = modes["zero-code"]
    frozen = Nl2sqlInstrumentor()
    for mode, call, setup, teardown in (
        ("bare", bare_call, lambda: None, lambda: None),
        ("sdk", sdk_call, lambda: None, lambda: None),
        ("zero-code", zero_call, zero_setup, zero_teardown),
        (  # last: gc.freeze() is process-wide
            "zero-code, OBSERVABILITY_GC_FREEZE=true",
            zero_call,
            lambda: frozen.instrument(settings=InstrumentorSettings(gc_freeze=True)),
            frozen.uninstrument,
        ),
    ):
        setup()
        try:
            count, total, worst = _full_collections(call, 10_000)
        finally:
            teardown()
        print(
            f"full collections per 10,000 invokes, {mode}: {count} (total {total * 1e3:.0f} ms,"
            f" longest {worst * 1e3:.1f} ms)"
        )
    gc.unfreeze()


def _full_collections(call: Callable[[], Any], invokes: int) -> tuple[int, float, float]:
    """Generation-2 collections during `invokes` calls: how many, their total and longest duration."""
    durations: list[float] = []
    started: list[float] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            durations.append(time.perf_counter() - started.pop())

    gc.collect()
    gc.callbacks.append(watch)
    try:
        for _ in range(invokes):
            call()
    finally:
        gc.callbacks.remove(watch)
    return len(durations), sum(durations), max(durations, default=0.0)


if __name__ == "__main__":
    main()
