"""Sizing of the scale-out profile (docs/scaling.md's table), measured on this machine in one run.

Starts the profile (compose/docker-compose.yml + docker-compose.scale.yml) as its own compose project
with each tier pinned: the agent to CPU 0 (cpus 1.0), the two samplers to CPU 1 (cpus 0.5 each). Load:
telemetrygen, traces of 8 spans (a root and 7 children, like a demo question) with GenAI-like
attributes, at increasing rates until a tier refuses or fails to pass data on. Reads each collector's
own metrics (published on 127.0.0.1 for the run only) and prints:

  - spans/s per core for each tier: accepted spans / CPU seconds the tier used (at every step);
  - memory per 1,000 traces in flight on a sampler: heap against traces held (slope across steps);
  - what one more sampler adds: the sampler tier's top throughput with one sampler against two;
  - late-span share against decision_wait: the demo app (real span export timing: batches every 5 s)
    at three decision_wait values.

Needs `make images` and `make tools` (telemetrygen), Docker and the package's venv (the demo).
  .venv/bin/python benchmarks/bench_scale_out.py [--quick]
Not a test: it asserts nothing; the figures vary with the machine (2 shared cores here).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("NL2SQL_OBS_TOOLS") or Path.home() / ".cache" / "nl2sql-obs" / "bin")
IMAGES_ENV = TOOLS.parent / "images.env"
SAMPLERS = ("sampler-1", "sampler-2")
SERVICES = ("collector", "jaeger", "prometheus", "victorialogs", *SAMPLERS)
SPANS_PER_TRACE = 8
STEP_S = 15
Metrics = dict[str, float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
    return out


def scrape(port: int) -> Metrics:
    """name (without labels) → sum over its series, from a collector's /metrics."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: Metrics = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


class Profile:
    """The scale-out profile as a throwaway compose project with pinned tiers and published metrics."""

    def __init__(self, work: Path) -> None:
        self.project = f"nl2sqlbench{uuid.uuid4().hex[:6]}"
        self.metrics = {name: free_port() for name in ("collector", *SAMPLERS)}
        self.otlp = free_port()
        pins = {"collector": ("0", 1.0), "sampler-1": ("1", 0.5), "sampler-2": ("1", 0.5)}
        override = {
            "services": {
                name: {
                    "cpuset": cpuset,
                    "deploy": {"resources": {"limits": {"cpus": str(cpus)}}},
                    "ports": [f"127.0.0.1:{self.metrics[name]}:8888"],
                }
                for name, (cpuset, cpus) in pins.items()
            }
        }
        self.override = work / "bench.yml"
        self.override.write_text(json.dumps(override))
        secret = work / "grafana-password"
        secret.write_text("unused\n")
        self.env = {
            **os.environ,
            **{k: v for k, v in read_env(IMAGES_ENV).items() if k.endswith("_IMAGE")},
            "COMPOSE_PROJECT_NAME": self.project,
            "GRAFANA_ADMIN_PASSWORD_FILE": str(secret),
            "NL2SQL_SAMPLER_RESOLVE_INTERVAL": "1s",
            "NL2SQL_SAMPLING_DECISION_WAIT": "5s",
            "NL2SQL_SAMPLING_NUM_TRACES": "200000",
        }
        for var in ("OTLP_GRPC_PORT", "OTLP_HTTP_PORT", "COLLECTOR_HEALTH_PORT", "JAEGER_UI_PORT"):
            self.env[var] = str(self.otlp if var == "OTLP_GRPC_PORT" else free_port())
        for var in ("PROMETHEUS_PORT", "VICTORIALOGS_PORT", "GRAFANA_PORT"):
            self.env[var] = str(free_port())

    def compose(self, *args: str, env: dict[str, str] | None = None) -> None:
        files = ["-f", "compose/docker-compose.yml", "-f", "compose/docker-compose.scale.yml"]
        cmd = ["docker", "compose", *files, "-f", str(self.override), "-p", self.project, *args]
        proc = subprocess.run(cmd, cwd=ROOT, env={**self.env, **(env or {})}, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")

    @contextmanager
    def running(self) -> Iterator[Profile]:
        try:
            self.compose("up", "-d", "--wait", *SERVICES)
            yield self
        finally:
            self.compose("down", "--volumes", "--timeout", "5")


def telemetrygen(port: int, spans_per_s: float, seconds: int, workers: int = 8) -> None:
    """telemetrygen's --rate is spans per second per worker (children included)."""
    cmd = [
        str(TOOLS / "telemetrygen"),
        "traces",
        "--otlp-endpoint",
        f"127.0.0.1:{port}",
        "--otlp-insecure",
        "--workers",
        str(workers),
        "--rate",
        str(spans_per_s / workers),
        "--child-spans",
        str(SPANS_PER_TRACE - 1),
        "--duration",
        f"{seconds}s",
        "--service",
        "nl2sql-bench",
        "--allow-export-failures",
        "--telemetry-attributes",
        'gen_ai.request.model="gpt-4o-mini"',
        "--telemetry-attributes",
        'nl2sql.node.name="generate_sql"',
        "--telemetry-attributes",
        'tenant.id="acme"',
        "--telemetry-attributes",
        "gen_ai.usage.input_tokens=812",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)


def delta(after: Metrics, before: Metrics, name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def step(p: Profile, rate: float, samplers: tuple[str, ...]) -> dict[str, float]:
    """One load step: telemetrygen at `rate` spans/s; the tiers' throughput, CPU and memory."""
    tiers = ("collector", *samplers)
    before = {n: scrape(p.metrics[n]) for n in tiers}
    t0 = time.monotonic()
    telemetrygen(p.otlp, rate, STEP_S)
    held, heap = 0.0, 0.0
    for n in samplers:  # while the last traces wait for their decision
        m = scrape(p.metrics[n])
        held += m.get("otelcol_processor_tail_sampling_sampling_traces_on_memory", 0.0)
        heap += m.get("otelcol_process_runtime_heap_alloc_bytes", 0.0)
    elapsed = time.monotonic() - t0
    after = {n: scrape(p.metrics[n]) for n in tiers}
    agent_spans = delta(after["collector"], before["collector"], "otelcol_receiver_accepted_spans")
    sampler_spans = sum(delta(after[n], before[n], "otelcol_receiver_accepted_spans") for n in samplers)
    return {
        "rate": rate,
        "agent_spans_s": agent_spans / elapsed,
        "agent_cpu": delta(after["collector"], before["collector"], "otelcol_process_cpu_seconds") / elapsed,
        "agent_refused": delta(after["collector"], before["collector"], "otelcol_receiver_refused_spans"),
        "sampler_spans_s": sampler_spans / elapsed,
        "sampler_cpu": sum(delta(after[n], before[n], "otelcol_process_cpu_seconds") for n in samplers)
        / elapsed,
        "sampler_refused": sum(
            delta(after[n], before[n], "otelcol_receiver_refused_spans") for n in samplers
        ),
        "held": held,
        "heap_mib": heap / 2**20,
    }


def drained(p: Profile, samplers: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = sum(
            scrape(p.metrics[n]).get("otelcol_processor_tail_sampling_sampling_traces_on_memory", 0.0)
            for n in samplers
        )
        if held == 0:
            return
        time.sleep(1)


def ramp(p: Profile, rates: list[float], samplers: tuple[str, ...]) -> list[dict[str, float]]:
    rows = []
    for rate in rates:
        row = step(p, rate, samplers)
        rows.append(row)
        print(
            f"  {rate:>6.0f} spans/s offered: agent {row['agent_spans_s']:>7.0f} spans/s"
            f" on {row['agent_cpu']:.2f} cores (refused {row['agent_refused']:.0f});"
            f" samplers {row['sampler_spans_s']:>7.0f} spans/s on {row['sampler_cpu']:.2f} cores"
            f" (refused {row['sampler_refused']:.0f}); held {row['held']:.0f} traces,"
            f" heap {row['heap_mib']:.0f} MiB",
            flush=True,
        )
        drained(p, samplers)
        saturated = row["agent_spans_s"] < 0.9 * rate
        if row["agent_refused"] or row["sampler_refused"] or saturated:
            break
    return rows


def late_share(p: Profile, decision_wait: str, work: Path) -> float:
    """The demo (spans exported in 5 s batches, as an app does by default) against samplers with this
    decision_wait: spans that arrived after their trace was decided / all spans the samplers took."""
    p.compose("up", "-d", "--wait", *SAMPLERS, env={"NL2SQL_SAMPLING_DECISION_WAIT": decision_wait})
    time.sleep(2)  # the agent's resolver (1 s) sees the recreated samplers
    before = {n: scrape(p.metrics[n]) for n in SAMPLERS}
    venv = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    env.update(
        {
            "OBSERVABILITY_EXPORTER": "otlp",
            "OBSERVABILITY_LOG_STREAM": "none",
            "OBSERVABILITY_AUDIT_PATH": str(work / f"audit-{decision_wait}" / "events.log"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p.otlp}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            # the SDK's own default, which a production app keeps (the local environment exports faster)
            "OTEL_BSP_SCHEDULE_DELAY": "5000",
            "NO_PROXY": "*",
        }
    )
    args = [str(venv / "opentelemetry-instrument"), str(venv / "nl2sql-obs"), "demo", "--requests", "80"]
    args += ["--concurrency", "4", "--time-scale", "0.5", "--no-progress", "--db", str(work / "demo.db")]
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=300)
    time.sleep(12)  # the last batch, then the longest decision_wait measured
    after = {n: scrape(p.metrics[n]) for n in SAMPLERS}
    # late: after the decision, either still in the trace buffer (late_span_age) or answered from the
    # decision cache (early_releases_from_cache_decision)
    late = sum(
        delta(after[n], before[n], name)
        for n in SAMPLERS
        for name in (
            "otelcol_processor_tail_sampling_sampling_late_span_age_count",
            "otelcol_processor_tail_sampling_early_releases_from_cache_decision",
        )
    )
    spans = sum(delta(after[n], before[n], "otelcol_receiver_accepted_spans") for n in SAMPLERS)
    return late / spans if spans else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer load steps")
    opts = parser.parse_args()
    if not IMAGES_ENV.exists() or not (TOOLS / "telemetrygen").exists():
        print(f"bench_scale_out: skipped: needs {IMAGES_ENV} and {TOOLS}/telemetrygen (make images)")
        return 0
    rates = [2000.0, 8000.0] if opts.quick else [2000.0, 4000.0, 8000.0, 16000.0, 32000.0]
    with tempfile.TemporaryDirectory(prefix="nl2sql-bench-") as d, Profile(Path(d)).running() as p:
        print(
            "scale-out profile: agent on CPU 0 (cpus 1.0), samplers on CPU 1 (cpus 0.5 each);"
            f" {STEP_S} s per step"
        )
        print("two samplers:")
        two = ramp(p, rates, SAMPLERS)
        p.compose("stop", "sampler-2")
        time.sleep(3)  # the agent's resolver drops it
        print("one sampler (sampler-2 stopped):")
        one = ramp(p, [r for r in rates if r >= rates[len(rates) // 2]], ("sampler-1",))
        p.compose("start", "sampler-2")
        p.compose("up", "-d", "--wait", *SAMPLERS)
        print("late spans against decision_wait (the demo, default 5 s span export batches):")
        shares = {w: late_share(p, w, Path(d)) for w in ("2s", "5s", "10s")}
        for w, s in shares.items():
            print(f"  decision_wait {w:>3}: {s:.1%} of spans late")

    def per_core(rows: list[dict[str, float]], tier: str) -> float:
        best = max(rows, key=lambda r: r[f"{tier}_spans_s"])
        return best[f"{tier}_spans_s"] / best[f"{tier}_cpu"] if best[f"{tier}_cpu"] else float("nan")

    mem = [(r["held"], r["heap_mib"]) for r in two if r["held"] > 0]
    slope = (
        (mem[-1][1] - mem[0][1]) / (mem[-1][0] - mem[0][0]) * 1000
        if len(mem) >= 2 and mem[-1][0] != mem[0][0]
        else float("nan")
    )
    top = max(two, key=lambda r: r["agent_spans_s"])
    limit = "a tier refused data" if top["agent_refused"] or top["sampler_refused"] else "the load generator"
    same = {r["rate"]: r for r in two}
    pairs = [(same[r["rate"]], r) for r in one if r["rate"] in same]
    print("\nsizing (this machine, one run):")
    print(
        f"  agent:    {per_core(two, 'agent'):>8.0f} spans/s per core"
        " (redaction, span metrics, routing by trace id)"
    )
    print(f"  sampler:  {per_core(two, 'sampler'):>8.0f} spans/s per core (tail sampling, 6 policies)")
    print(f"  memory:   {slope:>8.1f} MiB heap per 1,000 traces in flight (8 spans each)")
    print(
        f"  top load: {top['agent_spans_s']:.0f} spans/s, agent on {top['agent_cpu']:.2f} of its 1.0 core,"
        f" samplers on {top['sampler_cpu']:.2f} of 1.0: the limit was {limit}"
    )
    for a, b in pairs:
        print(
            f"  at {a['rate']:.0f} spans/s: two samplers held {a['held']:.0f} traces"
            f" in {a['heap_mib']:.0f} MiB"
            f" on {a['sampler_cpu']:.2f} cores; one held {b['held']:.0f} in {b['heap_mib']:.0f} MiB on"
            f" {b['sampler_cpu']:.2f}: one more sampler takes 1/n of the traces in flight and of the CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
