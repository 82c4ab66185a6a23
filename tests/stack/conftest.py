"""Shared fixtures for the stack-config checks: repository paths and the real tool binaries.

The tools (otelcol-nl2sql, jaeger, prometheus, promtool, docker-compose) are built from their
official Go modules by ``scripts/build-tools.sh`` into ``$NL2SQL_OBS_TOOLS``. When one is missing,
a test FAILS in CI (``CI=true``) and is skipped locally with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("NL2SQL_OBS_TOOLS", Path.home() / ".cache" / "nl2sql-obs" / "bin"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def missing(reason: str) -> None:
    """Fail in CI, skip locally."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the real tools must be present; run `make tools`)")
    pytest.skip(f"{reason}; run `make tools`")


def find_tool(name: str) -> Path:
    path = TOOLS / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if found and name != "docker-compose":  # Debian's docker-compose is v1; only ours counts
        return Path(found)
    missing(f"{name} not found in {TOOLS}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def tool() -> Callable[[str], Path]:
    return find_tool


def run(
    cmd: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"{' '.join(proc.args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PromQLParser:
    """The real PromQL parser: a throwaway Prometheus on 127.0.0.1 and its /api/v1/parse_query."""

    def __init__(self, base: str) -> None:
        self.base = base

    def parse(self, expr: str) -> dict[str, Any]:
        import json

        data = urllib.parse.urlencode({"query": expr}).encode()
        req = urllib.request.Request(f"{self.base}/api/v1/parse_query", data=data, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as e:
            body = json.load(e)
            raise ValueError(body.get("error", str(body))) from None
        if body.get("status") != "success":
            raise ValueError(body.get("error", str(body)))
        return dict(body["data"])


@pytest.fixture(scope="session")
def promql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromQLParser]:
    prometheus = find_tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text("global: {}\n", encoding="utf-8")
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(prometheus),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                pytest.fail(f"prometheus did not become ready on {base}: {err[-2000:]}")
            time.sleep(0.3)
        yield PromQLParser(base)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
