"""Helpers for the integration tests: the compose stack, polling, and the Jaeger/Prometheus/VictoriaLogs
HTTP APIs.

Every request goes to a port that compose published on 127.0.0.1; nothing else is ever contacted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
# the test-only SLO file whose generated rules the integration stack loads beside the product's
CI_SLO_FILE = ROOT / "tests" / "integration" / "slo-ci.yml"
# extra compose files layered on top (e.g. to try a flag before changing the product's file)
COMPOSE_OVERRIDES = [
    Path(p) for p in os.environ.get("NL2SQL_OBS_COMPOSE_OVERRIDES", "").split(os.pathsep) if p
]
TOOLS = Path(os.environ.get("NL2SQL_OBS_TOOLS") or Path.home() / ".cache" / "nl2sql-obs" / "bin")
IMAGES_ENV = Path(os.environ.get("NL2SQL_OBS_IMAGES_ENV") or TOOLS.parent / "images.env")
BACKENDS = ("collector", "jaeger", "prometheus", "alertmanager", "victorialogs")
# compose variables naming the images the integration stack runs (scripts/build-images.sh writes them)
IMAGE_VARS = (
    "COLLECTOR_IMAGE",
    "JAEGER_IMAGE",
    "PROMETHEUS_IMAGE",
    "ALERTMANAGER_IMAGE",
    "VICTORIALOGS_IMAGE",
    "PROBE_IMAGE",
)
# compose variables of the host ports (compose/.env); each stack gets free ones
PORT_VARS = (
    "OTLP_GRPC_PORT",
    "OTLP_HTTP_PORT",
    "COLLECTOR_HEALTH_PORT",
    "JAEGER_UI_PORT",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
    "VICTORIALOGS_PORT",
    "GRAFANA_PORT",
)
LOCALHOST = "127.0.0.1"
# the one skip reason CI accepts for an integration test (conftest turns every other skip into a failure)
GRAFANA_SKIP_REASON = "no Grafana image on this machine"

T = TypeVar("T")


class Timeout(AssertionError):
    pass


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy (returned) or ``timeout`` seconds pass.

    Exceptions raised by the probe count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as exc:  # the backend may be starting, restarting or still indexing
            last = exc
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}; last result: {last!r}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Figures:
    """Numbers the suite measures and prints at the end (pytest_terminal_summary)."""

    values: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value

    def put_series(self, name: str, samples: Iterable[float], unit: str = "s") -> None:
        s = list(samples)
        if s:
            self.put(
                name,
                f"median {statistics.median(s):.2f}{unit}, worst {max(s):.2f}{unit} (n={len(s)})",
            )


FIGURES = Figures()


@dataclass
class Stack:
    """One compose project (the BACKENDS) with its own name, ports and volumes."""

    env: dict[str, str]
    project: str = field(default_factory=lambda: f"nl2sqlit{uuid.uuid4().hex[:8]}")
    ports: dict[str, int] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)
    # the compose files (a profile's overlay comes after the base file) and the services it waits for
    files: list[Path] = field(default_factory=lambda: [COMPOSE_FILE, *COMPOSE_OVERRIDES])
    wait_for: tuple[str, ...] = BACKENDS

    def __post_init__(self) -> None:
        for name in PORT_VARS:
            self.ports[name] = free_port()
        self.env.update({k: str(v) for k, v in self.ports.items()})
        self.env["COMPOSE_PROJECT_NAME"] = self.project
        self.session.trust_env = False  # never through a proxy: straight to 127.0.0.1

    # -- compose ---------------------------------------------------------------------------
    def compose_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        return env

    def compose(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        docker = shutil.which("docker") or "docker"
        files = [x for f in self.files for x in ("-f", str(f))]
        cmd = [docker, "compose", *files, "-p", self.project, *args]
        proc = subprocess.run(
            cmd,
            env=self.compose_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def health(self, service: str) -> str:
        proc = self.compose("ps", "--all", "--format", "json", service, check=False)
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line:
                continue
            rows = json.loads(line)
            for row in rows if isinstance(rows, list) else [rows]:
                return str(row.get("Health") or row.get("State") or "")
        return ""

    def wait_healthy(self, *services: str, timeout: float = 120) -> None:
        for service in services or self.wait_for:
            wait_until(
                lambda s=service: self.health(s) == "healthy", timeout=timeout, what=f"{service} healthy"
            )

    def stop(self, service: str) -> None:
        self.compose("stop", service)

    def start(self, service: str) -> None:
        self.compose("start", service)

    def restart(self, service: str) -> None:
        self.compose("restart", service)

    def container_id(self, service: str) -> str:
        return self.compose("ps", "-q", "--all", service).stdout.strip()

    def memory_mib(self) -> dict[str, float]:
        """Resident memory of each backend container, as `docker stats` reports it."""
        out: dict[str, float] = {}
        for service in self.wait_for:
            cid = self.container_id(service)
            if not cid:
                continue
            proc = subprocess.run(
                ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", cid],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            used = proc.stdout.split("/")[0].strip()
            out[service] = _to_mib(used)
        return out

    # -- endpoints (127.0.0.1 only) -------------------------------------------------------
    @property
    def otlp_grpc(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['OTLP_GRPC_PORT']}"

    @property
    def otlp_http(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['OTLP_HTTP_PORT']}"

    @property
    def jaeger(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['JAEGER_UI_PORT']}"

    @property
    def prometheus(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['PROMETHEUS_PORT']}"

    @property
    def alertmanager(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['ALERTMANAGER_PORT']}"

    @property
    def victorialogs(self) -> str:
        return f"http://{LOCALHOST}:{self.ports['VICTORIALOGS_PORT']}"

    # -- Jaeger ------------------------------------------------------------------------------
    def get_json(self, url: str, **params: Any) -> Any:
        resp = self.session.get(url, params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as Jaeger's query API returns it, or None while Jaeger does not have it."""
        resp = self.session.get(f"{self.jaeger}/api/traces/{trace_id}", timeout=10)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        data = resp.json().get("data") or []
        return data[0] if data else None

    def traces(
        self, service: str, *, limit: int = 1000, lookback: str = "1h", **params: Any
    ) -> list[dict[str, Any]]:
        body = self.get_json(
            f"{self.jaeger}/api/traces", service=service, limit=limit, lookback=lookback, **params
        )
        return list(body.get("data") or [])

    def services(self) -> list[str]:
        return list(self.get_json(f"{self.jaeger}/api/services").get("data") or [])

    # -- Prometheus --------------------------------------------------------------------------
    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self.get_json(f"{self.prometheus}/api/v1/query", **params)
        assert body.get("status") == "success", body
        return list(body["data"]["result"])

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        if not result:
            return None
        return float(result[0]["value"][1])

    def series(self, match: str) -> list[dict[str, str]]:
        body = self.get_json(f"{self.prometheus}/api/v1/series", **{"match[]": match})
        return list(body["data"])

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        body = self.get_json(
            f"{self.prometheus}/api/v1/query_exemplars", query=expr, start=f"{start:.3f}", end=f"{end:.3f}"
        )
        return list(body.get("data") or [])

    # -- VictoriaLogs -------------------------------------------------------------------------
    def logs(self, query: str, *, limit: int = 1000, start: str = "1h") -> list[dict[str, str]]:
        """Log records matching a LogsQL query (newest first), as VictoriaLogs returns them: one JSON
        object per line, every field a string."""
        resp = self.session.post(
            f"{self.victorialogs}/select/logsql/query",
            data={"query": query, "limit": str(limit), "start": start},
            timeout=10,
        )
        resp.raise_for_status()
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def logsql_quote(value: str) -> str:
    """A LogsQL string literal (double-quoted, JSON escaping)."""
    return json.dumps(value)


def _to_mib(text: str) -> float:
    text = text.strip()
    units = {
        "KiB": 1 / 1024,
        "MiB": 1.0,
        "GiB": 1024.0,
        "B": 1 / (1024 * 1024),
        "kB": 1 / 1024,
        "MB": 1.0,
        "GB": 1024.0,
    }
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * units[unit]
            except ValueError:
                return float("nan")
    return float("nan")


def span_tag(span: dict[str, Any], key: str) -> Any:
    for tag in span.get("tags") or []:
        if tag.get("key") == key:
            return tag.get("value")
    return None


def parent_id(span: dict[str, Any]) -> str | None:
    for ref in span.get("references") or []:
        if ref.get("refType") == "CHILD_OF":
            return str(ref.get("spanID"))
    return None
