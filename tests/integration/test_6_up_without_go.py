"""`make up` with Docker and make only: no Go on PATH, no host-built tool, every image present.

It runs the real `make up` (scripts/up.sh) under its own compose project name and free ports, so it
never touches a stack the user started with the defaults, waits for it to report healthy, and
removes everything it started (containers, network, volumes) at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import image_env, missing_images
from stackkit import COMPOSE_FILE, PORT_VARS, ROOT, free_port, read_env_file


def _path_without_go() -> str:
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "go").exists()]
    path = os.pathsep.join(dirs)
    assert shutil.which("go", path=path) is None
    assert shutil.which("docker", path=path), "docker is needed"
    assert shutil.which("make", path=path), "make is needed"
    return path


@pytest.fixture
def bare_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    images = image_env()
    problem = missing_images(images)
    if problem:
        pytest.skip(problem)
    grafana = read_env_file(ROOT / "compose" / ".env")["GRAFANA_IMAGE"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO", "COMPOSE_"))}
    env.update(images)
    env.update({name: str(free_port()) for name in PORT_VARS})
    env.update(
        {
            "PATH": _path_without_go(),
            # an empty tool cache: nothing built on this host (no probe, no compose binary, no images.env)
            "NL2SQL_OBS_TOOLS": str(tmp_path / "no-tools" / "bin"),
            "NL2SQL_OBS_IMAGES_ENV": str(tmp_path / "no-images.env"),
            "COMPOSE_PROJECT_NAME": f"nl2sqlup{os.urandom(4).hex()}",
            "GRAFANA_ADMIN_PASSWORD_FILE": str(tmp_path / "var" / "grafana-admin-password"),
            "GRAFANA_IMAGE": grafana,
            "UP_TIMEOUT": "240",
        }
    )
    try:
        yield env
    finally:
        _compose(env, "down", "--volumes", "--remove-orphans", "--timeout", "10")


def _run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _compose(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """docker compose on the test's own project (never the user's default one)."""
    project = env["COMPOSE_PROJECT_NAME"]
    return _run(["docker", "compose", "-f", str(COMPOSE_FILE), "-p", project, *args], env, timeout=300)


@pytest.mark.timeout(600)
def test_make_up_becomes_healthy_without_go(bare_env: dict[str, str]) -> None:
    proc = _run(["make", "--no-print-directory", "up"], bare_env, timeout=420)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "stack is up" in out
    assert "build-tools" not in out, "make up tried to build a tool on the host"
    ps = _compose(bare_env, "ps", "--all", "--format", "json")
    assert ps.returncode == 0, ps.stderr
    rows = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
    state = {r["Service"]: (r.get("Health") or r.get("State"), r.get("ExitCode")) for r in rows}
    for service in ("collector", "jaeger", "prometheus", "victorialogs"):
        assert state[service][0] == "healthy", state
    assert state["probe"] == ("exited", 0), state
    # the published ports are ours, on loopback: the user's default stack is not touched
    assert f"127.0.0.1:{bare_env['VICTORIALOGS_PORT']}->9428/tcp" in json.dumps(rows)
    # nothing built on the host is mounted: binds are the repository's configs (and Grafana's secret)
    inspect = _run(["docker", "inspect", *[r["ID"] for r in rows]], bare_env)
    binds = [m["Source"] for c in json.loads(inspect.stdout) for m in c["Mounts"] if m["Type"] == "bind"]
    assert binds
    allowed = (str(ROOT), bare_env["GRAFANA_ADMIN_PASSWORD_FILE"])
    assert [b for b in binds if not b.startswith(allowed)] == [], binds
    if "grafana" not in state:
        assert "starting the stack without Grafana" in out
