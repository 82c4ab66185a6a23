"""The pipeline itself, driven by telemetrygen (the collector project's load generator, Go-built).

OTLP into the collector's published port → Jaeger (traces) and Prometheus (metrics, span metrics).
These run before the demo tests and need nothing from the Python package.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
from stackkit import FIGURES, TOOLS, Stack, wait_until

TELEMETRYGEN = TOOLS / "telemetrygen"


def telemetrygen(stack: Stack, *args: str) -> None:
    if not TELEMETRYGEN.exists():
        pytest.skip(f"{TELEMETRYGEN} missing: run scripts/build-tools.sh telemetrygen")
    endpoint = stack.otlp_grpc.removeprefix("http://")
    proc = subprocess.run(
        [str(TELEMETRYGEN), *args, "--otlp-endpoint", endpoint, "--otlp-insecure"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_backends_report_their_versions(stack: Stack) -> None:
    info = stack.get_json(f"{stack.prometheus}/api/v1/status/buildinfo")["data"]
    assert info["version"].startswith("3."), info
    flags = stack.get_json(f"{stack.prometheus}/api/v1/status/flags")["data"]
    assert flags.get("web.enable-otlp-receiver") == "true"
    assert isinstance(stack.services(), list)


def test_telemetrygen_traces_reach_jaeger(stack: Stack) -> None:
    service = f"tg-{uuid.uuid4().hex[:8]}"
    telemetrygen(stack, "traces", "--traces", "5", "--child-spans", "2", "--service", service, "--rate", "0")
    first_seen: dict[str, float] = {}

    def all_there() -> list[dict] | None:
        traces = stack.traces(service)
        now = time.time()
        for t in traces:
            first_seen.setdefault(t["traceID"], now)
        complete = [t for t in traces if len(t["spans"]) == 3]
        return traces if len(complete) == 5 else None

    traces = wait_until(all_there, timeout=60, what=f"5 telemetrygen traces of {service} in Jaeger")
    for t in traces:
        by_id = {s["spanID"]: s for s in t["spans"]}
        roots = [s for s in t["spans"] if not s.get("references")]
        assert len(roots) == 1
        for s in t["spans"]:
            for ref in s.get("references") or []:
                assert ref["spanID"] in by_id
    ends = {t["traceID"]: max(s["startTime"] + s["duration"] for s in t["spans"]) / 1e6 for t in traces}
    FIGURES.put_series("telemetrygen span end → Jaeger", [first_seen[k] - ends[k] for k in ends])


def test_telemetrygen_metrics_reach_prometheus(stack: Stack) -> None:
    name = f"tg_probe_{uuid.uuid4().hex[:8]}"
    t0 = time.time()
    telemetrygen(
        stack, "metrics", "--metrics", "3", "--metric-type", "Sum", "--otlp-metric-name", name, "--rate", "0"
    )
    found = wait_until(
        lambda: stack.query(f'{{__name__=~"{name}.*"}}'), timeout=60, what=f"metric {name} in Prometheus"
    )
    FIGURES.put(
        "telemetrygen metric record → Prometheus",
        f"{time.time() - t0:.2f}s (one sample, incl. process start)",
    )
    assert found


def test_span_metrics_connector_feeds_prometheus(stack: Stack) -> None:
    service = f"tg-{uuid.uuid4().hex[:8]}"
    telemetrygen(stack, "traces", "--traces", "3", "--child-spans", "1", "--service", service, "--rate", "0")
    result = wait_until(
        lambda: stack.query(f'traces_span_metrics_calls_total{{service_name="{service}"}}'),
        timeout=90,
        what=f"span metrics of {service}",
    )
    assert {r["metric"].get("span_name") for r in result}


def test_collector_own_metrics_are_scraped(stack: Stack) -> None:
    up = wait_until(lambda: stack.query('up{job="otelcol"} == 1'), timeout=60, what="collector scraped")
    assert up
    accepted = wait_until(
        lambda: stack.query("otelcol_receiver_accepted_spans_total"),
        timeout=90,
        what="otelcol_receiver_accepted_spans",
    )
    assert accepted
