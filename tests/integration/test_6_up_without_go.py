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
        subprocess.run(
            [
                "docker",
                "compose",
                "-f",
                str(COMPOSE_FILE),
                "-p",
                env["COMPOSE_PROJECT_NAME"],
                "down",
                "--volumes",
                "--remove-orphans",
                "--timeout",
                "10",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.mark.timeout(600)
def test_make_up_becomes_healthy_without_go(bare_env: dict[str, str]) -> None:
    proc = subprocess.run(
        ["make", "--no-print-directory", "up"],
        env=bare_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "stack is up" in out
    assert "build-tools" not in out, "make up tried to build a tool on the host"
    project = bare_env["COMPOSE_PROJECT_NAME"]
    ps = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", project, "ps", "--all", "--format", "json"],
        env=bare_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
    state = {r["Service"]: (r.get("Health") or r.get("State"), r.get("ExitCode")) for r in rows}
    for service in ("collector", "jaeger", "prometheus", "victorialogs"):
        assert state[service][0] == "healthy", state
    assert state["probe"] == ("exited", 0), state
    # the published ports are ours, on loopback: the user's default stack is not touched
    assert f"127.0.0.1:{bare_env['VICTORIALOGS_PORT']}->9428/tcp" in json.dumps(rows)
    # no container mounts anything from the host's tool cache
    ids = [r["ID"] for r in rows]
    mounts = json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    )
    binds = [m["Source"] for c in mounts for m in c["Mounts"] if m["Type"] == "bind"]
    assert not [b for b in binds if b.startswith(bare_env["NL2SQL_OBS_TOOLS"].rsplit("/", 2)[0])], binds
    if "grafana" not in state:
        assert "starting the stack without Grafana" in out
