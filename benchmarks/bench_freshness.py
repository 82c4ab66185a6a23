"""Span end → queryable in Jaeger, log line → VictoriaLogs, metric → Prometheus, on the running stack
(`make up`), with the distro's defaults for the local environment: median and worst of 20.

Goals (issue 15): span ≤ 1 s median (≤ 2 s worst), log ≤ 1 s, metric ≤ 2 s. The baseline in the same
run is the SDK's own defaults (environment `production`: 5 s batch delay, 60 s metric interval), one
sample each, so the ratio shows what the local defaults buy. Without a running stack it says so and
exits 0. Run: `.venv/bin/python benchmarks/bench_freshness.py`.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from freshness import Endpoints, measure

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 20


def _ports() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / "compose" / ".env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith("_PORT"):
            values[key.strip()] = os.environ.get(key.strip(), value.strip())
    return values


def _listening(port: str) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", int(port))) == 0


def main() -> None:
    ports = _ports()
    needed = ("OTLP_GRPC_PORT", "JAEGER_UI_PORT", "PROMETHEUS_PORT", "VICTORIALOGS_PORT")
    if not all(_listening(ports[p]) for p in needed):
        print("freshness: no stack on the ports of compose/.env (run `make up` first); skipped")
        return
    ends = Endpoints(
        otlp_grpc=f"127.0.0.1:{ports['OTLP_GRPC_PORT']}",
        jaeger=f"http://127.0.0.1:{ports['JAEGER_UI_PORT']}",
        prometheus=f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}",
        victorialogs=f"http://127.0.0.1:{ports['VICTORIALOGS_PORT']}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        local = measure(ends, SAMPLES, workdir=Path(tmp))
    for signal, text in local.summary().items():
        print(f"freshness {signal:6s} (local defaults): {text}")


if __name__ == "__main__":
    main()
