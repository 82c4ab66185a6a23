"""Runs the demo app as a real subprocess under `opentelemetry-instrument`, against the stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from stackkit import ROOT, Stack

VENV_BIN = Path(sys.executable).parent
INSTRUMENT = VENV_BIN / "opentelemetry-instrument"
NL2SQL_OBS = VENV_BIN / "nl2sql-obs"

TENANTS = ("acme", "globex", "initech")


@dataclass
class DemoRun:
    args: list[str]
    env: dict[str, str]
    workdir: Path
    environment: str
    started: float = 0.0
    finished: float = 0.0
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _out: list[str] = field(default_factory=list, repr=False)
    _err: list[str] = field(default_factory=list, repr=False)

    @property
    def summary_path(self) -> Path:
        return self.workdir / "summary.json"

    @property
    def audit_path(self) -> Path:
        return self.workdir / "audit" / "events.log"

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.summary_path.read_text())

    @property
    def wall_s(self) -> float:
        return self.finished - self.started

    def start(self) -> DemoRun:
        self.started = time.time()
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for stream, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            t = threading.Thread(target=_pump, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def wait(self, timeout: float = 240) -> DemoRun:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.finished = time.time()
            for t in self._threads:
                t.join(timeout=10)
            self.stdout = "".join(self._out)
            self.stderr = "".join(self._err)
        return self

    def progressed(self) -> int:
        """How many JSON log lines the demo has written so far (a rough progress measure)."""
        return sum(1 for line in list(self._out) + list(self._err) if line.lstrip().startswith("{"))

    def check(self) -> DemoRun:
        assert self.returncode == 0, (
            f"demo exited {self.returncode}\n--- stdout (tail)\n{self.stdout[-3000:]}\n"
            f"--- stderr (tail)\n{self.stderr[-3000:]}"
        )
        assert self.summary_path.exists(), f"no summary JSON at {self.summary_path}"
        return self

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in (self.stdout + "\n" + self.stderr).splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


def _demo_db() -> Path:
    """One sample database for every run of the session (the demo creates it on first use)."""
    path = Path(tempfile.gettempdir()) / f"nl2sql-it-{os.getuid()}" / "demo.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _pump(stream: Any, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
    stream.close()


def demo(
    stack: Stack | None,
    workdir: Path,
    *,
    requests: int = 60,
    concurrency: int = 4,
    tenants: tuple[str, ...] = TENANTS,
    failure_rate: float = 0.1,
    seed: int = 7,
    time_scale: float = 0.05,
    question: str | None = None,
    otlp_endpoint: str | None = None,
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> DemoRun:
    """A configured (not yet started) demo run with its own deployment environment label."""
    if not INSTRUMENT.exists() or not NL2SQL_OBS.exists():
        pytest.skip(f"{INSTRUMENT} / {NL2SQL_OBS} missing: run `make install`")
    environment = f"it-{uuid.uuid4().hex[:10]}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "audit").mkdir(exist_ok=True)
    args = [
        str(INSTRUMENT),
        str(NL2SQL_OBS),
        "demo",
        "--requests",
        str(requests),
        "--concurrency",
        str(concurrency),
        "--tenants",
        ",".join(tenants),
        "--failure-rate",
        str(failure_rate),
        "--seed",
        str(seed),
        "--time-scale",
        str(time_scale),
        "--summary-json",
        str(workdir / "summary.json"),
        "--no-progress",
    ]
    if question is not None:
        args += ["--question", question]
    args += list(extra_args)
    args += ["--db", str(_demo_db())]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    endpoint = otlp_endpoint or (stack.otlp_grpc if stack else "http://127.0.0.1:9")
    env.update(
        {
            "OBSERVABILITY_EXPORTER": "otlp",
            "OBSERVABILITY_ENVIRONMENT": environment,
            "OBSERVABILITY_AUDIT_PATH": str(workdir / "audit" / "events.log"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "NO_PROXY": "*",
            "PYTHONUNBUFFERED": "1",
            "XDG_DATA_HOME": str(workdir / "xdg"),
            "HOME": os.environ.get("HOME", str(workdir)),
        }
    )
    env.pop("http_proxy", None)
    env.pop("https_proxy", None)
    env.pop("HTTP_PROXY", None)
    env.pop("HTTPS_PROXY", None)
    if extra_env:
        env.update(extra_env)
    return DemoRun(args=args, env=env, workdir=workdir, environment=environment)


def audit_show(run: DemoRun, trace_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NL2SQL_OBS), "audit", "show", "--trace-id", trace_id],
        env={**run.env, "OBSERVABILITY_EXPORTER": "none"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
