"""Telemetry is queryable soon with the distro's local defaults: a probe app that sets no OTEL_BSP_* or
OTEL_METRIC_* variable (and stays alive, so no exit flush helps) finds its request span in Jaeger, its
log line in VictoriaLogs and its metric series in Prometheus. The limit is generous (45 s: how fast is
the benchmark's figure, benchmarks/bench_freshness.py, and this run's figures go to the suite's
summary), yet below the SDK's own 60 s metric interval, so losing the local defaults fails it."""

from __future__ import annotations

import sys
from pathlib import Path

from stackkit import FIGURES, ROOT, Stack

sys.path.insert(0, str(ROOT / "benchmarks"))
from freshness import Endpoints, measure

SAMPLES = 20  # the benchmark's count: this run's figures are the README's (about 1-2 s each)


def test_span_log_and_metric_are_found_with_the_local_defaults(stack: Stack, workdir: Path) -> None:
    ends = Endpoints(
        otlp_grpc=stack.otlp_grpc.removeprefix("http://"),
        jaeger=stack.jaeger,
        prometheus=stack.prometheus,
        victorialogs=stack.victorialogs,
    )
    result = measure(ends, SAMPLES, limit_s=45.0, workdir=workdir)
    assert all(len(v) == SAMPLES for v in result.seconds.values())
    for signal, text in result.summary().items():
        FIGURES.put(f"{signal} → queryable, local defaults", text)
