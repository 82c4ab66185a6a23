"""How soon telemetry is queryable: a probe app under our distro's defaults (environment `local`, no
OTEL_BSP_*/OTEL_METRIC_* set) makes one request span, one log line and one metric series per sample,
each tagged with a tenant id of its own; the measurer polls Jaeger, VictoriaLogs and Prometheus until
each shows up. Used by benchmarks/bench_freshness.py (20 samples, the figures) and by
tests/integration/test_8_freshness.py (a few samples, generous limit: found at all).

The probe stays alive between samples, so what is measured is the batch delays and intervals, never
the flush at exit. Run as a script, it is the probe: one tenant id per line on stdin, it answers
`sent <tenant> <epoch seconds>` once the three are recorded.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

SIGNALS = ("span", "log", "metric")


@dataclass
class Endpoints:
    otlp_grpc: str  # host:port of the collector's OTLP/gRPC receiver
    jaeger: str
    prometheus: str
    victorialogs: str


@dataclass
class Freshness:
    """Seconds from the probe's `sent` to the first answer that holds it, per signal."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIGNALS})

    def summary(self) -> dict[str, str]:
        return {
            s: f"median {statistics.median(v):.2f} s, worst {max(v):.2f} s (n={len(v)})"
            for s, v in self.seconds.items()
            if v
        }


def _found(session: requests.Session, ends: Endpoints, service: str, tenant: str, signal: str) -> bool:
    if signal == "span":
        resp = session.get(
            f"{ends.jaeger}/api/traces",
            params={"service": service, "tags": json.dumps({"tenant.id": tenant}), "lookback": "1h"},
            timeout=5,
        )
        return resp.ok and bool(resp.json().get("data"))
    if signal == "log":
        resp = session.post(
            f"{ends.victorialogs}/select/logsql/query",
            data={"query": f'tenant_id:"{tenant}"', "limit": "1", "start": "1h"},
            timeout=5,
        )
        return resp.ok and bool(resp.text.strip())
    resp = session.get(
        f"{ends.prometheus}/api/v1/query",
        params={"query": f'nl2sql_sql_validations_total{{tenant_id="{tenant}"}}'},
        timeout=5,
    )
    return resp.ok and bool(resp.json()["data"]["result"])


def measure(ends: Endpoints, samples: int, *, limit_s: float = 60.0, workdir: Path) -> Freshness:
    """Run the probe for `samples` samples; raise TimeoutError when a signal is not found in `limit_s`."""
    service = f"freshness-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    env.update(
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{ends.otlp_grpc}",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OBSERVABILITY_AUDIT_ENABLED="false",
        OBSERVABILITY_LOG_STREAM="none",
        XDG_DATA_HOME=str(workdir),
        NO_PROXY="*",
        PYTHONUNBUFFERED="1",
    )
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    probe = subprocess.Popen(
        [str(launcher), sys.executable, __file__],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdin is not None
    assert probe.stdout is not None
    result = Freshness()
    session = requests.Session()
    session.trust_env = False
    try:
        for _ in range(samples):
            tenant = f"fresh-{uuid.uuid4().hex[:12]}"
            probe.stdin.write(tenant + "\n")
            probe.stdin.flush()
            line = probe.stdout.readline().split()
            if line[:2] != ["sent", tenant]:
                raise RuntimeError(f"the probe answered {line!r}")
            sent = float(line[2])
            pending = set(SIGNALS)
            while pending:
                now = time.time()
                if now - sent > limit_s:
                    raise TimeoutError(
                        f"{sorted(pending)} of tenant {tenant} not found within {limit_s:.0f} s"
                    )
                for signal in sorted(pending):
                    try:
                        hit = _found(session, ends, service, tenant, signal)
                    except (requests.RequestException, ValueError, KeyError):
                        hit = False  # a backend still starting or restarting: not yet
                    if hit:
                        result.seconds[signal].append(time.time() - sent)
                        pending.discard(signal)
                time.sleep(0.05)
    finally:
        probe.stdin.close()
        probe.wait(timeout=30)
    return result


def _probe() -> None:
    """The probe app: the distro configured everything (opentelemetry-instrument); use its API."""
    import logging

    from nl2sql_observability import record_validation, user_context, workflow

    log = logging.getLogger("freshness.probe")
    for line in sys.stdin:
        tenant = line.strip()
        with user_context({"tenant_id": tenant}), workflow():
            record_validation("passed")
            log.warning("freshness probe")
        print(f"sent {tenant} {time.time():.6f}", flush=True)


if __name__ == "__main__":
    _probe()
