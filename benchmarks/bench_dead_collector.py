"""What a dead collector costs the app: the demo under `opentelemetry-instrument`, exporting nowhere
(`OBSERVABILITY_EXPORTER=none`) against exporting OTLP to a closed 127.0.0.1 port (http and grpc).

Rounds alternate between the three variants in this one run; the figures are medians of the demo's
own run time (`elapsed_s` from its summary) and of the whole process (start-up to exit, which
includes the bounded exit flush, `OBSERVABILITY_SHUTDOWN_TIMEOUT`). Prints ratios against `none`.
Run: `.venv/bin/python benchmarks/bench_dead_collector.py [rounds]`.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
DEMO_ARGS = [
    "--requests",
    "20",
    "--concurrency",
    "4",
    "--seed",
    "7",
    "--failure-rate",
    "0.1",
    "--no-progress",
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(workdir: Path, name: str, env_extra: dict[str, str]) -> tuple[float, float, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    env.update(OBSERVABILITY_AUDIT_PATH=str(workdir / name / "events.log"), **env_extra)
    summary = workdir / f"{name}.json"
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "nl2sql-obs"), "demo", *DEMO_ARGS,
         "--db", str(workdir / "demo.sqlite3"), "--summary-json", str(summary)],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wall = time.perf_counter() - start
    data = json.loads(summary.read_text())
    return float(data["elapsed_s"]), wall, list(data["answers"])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    port = closed_port()
    variants = {
        "none": {"OBSERVABILITY_EXPORTER": "none"},
        "dead-http": {
            "OBSERVABILITY_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        },
        "dead-grpc": {
            "OBSERVABILITY_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        },
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    answers: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, env in variants.items():
                elapsed, wall, answers[name] = run_demo(Path(tmp), name, env)
                runs[name].append((elapsed, wall))
    base_run = statistics.median(r[0] for r in runs["none"])
    base_wall = statistics.median(r[1] for r in runs["none"])
    print(f"demo, {rounds} rounds, medians (ratio against exporter=none)")
    for name, samples in runs.items():
        run = statistics.median(s[0] for s in samples)
        wall = statistics.median(s[1] for s in samples)
        same = "same answers" if answers[name] == answers["none"] else "DIFFERENT ANSWERS"
        print(
            f"  {name:10s} run {run:6.2f}s ({run / base_run:4.2f}x)   "
            f"process {wall:6.2f}s ({wall / base_wall:4.2f}x)   {same}"
        )


if __name__ == "__main__":
    main()
