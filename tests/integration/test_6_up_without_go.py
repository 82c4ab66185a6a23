"""`make up` with Docker and make only: no Go on PATH, no host-built tool.

It runs the real `make up` (scripts/up.sh) under its own compose project name and free ports, so it
never touches a stack the user started with the defaults, waits for it to report healthy, and
removes everything it started (containers, network, volumes) at the end. First with every image
present; then with the probe image missing, which compose must build inside Docker from
tools/probe/Dockerfile, as on a machine with a registry: the registry's Go image is stood in for by
a local image of this machine's Go toolchain (`GO_IMAGE`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
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
            "ALERT_PAGE_WEBHOOK_URL_FILE": str(tmp_path / "var" / "alertmanager" / "page-webhook-url"),
            "ALERT_TICKET_WEBHOOK_URL_FILE": str(tmp_path / "var" / "alertmanager" / "ticket-webhook-url"),
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
    for service in ("collector", "jaeger", "prometheus", "alertmanager", "victorialogs"):
        assert state[service][0] == "healthy", state
    assert state["probe"] == ("exited", 0), state
    # the published ports are ours, on loopback: the user's default stack is not touched
    assert f"127.0.0.1:{bare_env['VICTORIALOGS_PORT']}->9428/tcp" in json.dumps(rows)
    # nothing built on the host is mounted: binds are the repository's configs (and Grafana's secret)
    inspect = _run(["docker", "inspect", *[r["ID"] for r in rows]], bare_env)
    binds = [m["Source"] for c in json.loads(inspect.stdout) for m in c["Mounts"] if m["Type"] == "bind"]
    assert binds
    allowed = (str(ROOT), str(Path(bare_env["GRAFANA_ADMIN_PASSWORD_FILE"]).parent))
    assert [b for b in binds if not b.startswith(allowed)] == [], binds
    if "grafana" not in state:
        assert "starting the stack without Grafana" in out
    _printed_links_open(out)


def _printed_links_open(out: str) -> None:
    """Every URL `make up` prints answers 200 with the page or API it promises."""
    import requests

    session = requests.Session()
    session.trust_env = False  # 127.0.0.1 only, never through a proxy
    printed = out.split("stack is up.", 1)[1]
    urls = re.findall(r"(\S+?)\s+(http://127\.0\.0\.1:\d+\S*)(.*)", printed)
    names = {name for name, _, _ in urls}
    assert {"Jaeger", "Prometheus", "VictoriaLogs", "HTTP", "Collector"} <= names, printed
    for name, url, note in urls:
        if name == "HTTP":  # the OTLP/HTTP endpoint: an (empty) export is accepted
            resp = session.post(f"{url}/v1/traces", json={}, timeout=10)
        else:
            resp = session.get(url, timeout=10)
        assert resp.status_code == 200, (name, url, resp.status_code, resp.text[:200])
        if "/api/" in url:  # a JSON API, and the line says why it is not the web UI
            assert resp.json()["data"] is not None
            assert "no web UI" in note, note
        elif name in {"Jaeger", "Prometheus", "VictoriaLogs"}:
            assert "<html" in resp.text.lower(), (name, url, resp.text[:200])
            assert "not the Jaeger UI" not in resp.text, f"{url} is Jaeger's placeholder page"


GO_STAND_IN = "nl2sql-obs/go-stand-in:local"


def _go_stand_in() -> str:
    """A Go image made from this machine's toolchain and a static busybox (the build's /bin/sh)."""
    if _run(["docker", "image", "inspect", GO_STAND_IN], dict(os.environ)).returncode == 0:
        return GO_STAND_IN
    go = shutil.which("go")
    busybox = Path("/bin/busybox")
    if not go or not busybox.exists():
        pytest.skip("the Go stand-in image needs go and busybox-static (scripts/ci-prerequisites.sh)")
    goroot = Path(go).resolve().parents[1]
    proc = subprocess.Popen(
        ["docker", "import", "--change", "ENV PATH=/usr/local/go/bin:/bin", "--change", "ENV HOME=/tmp",
         "--change", "ENV GOCACHE=/tmp/gocache", "--change", "ENV GOTOOLCHAIN=local", "-", GO_STAND_IN],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
        tar.add(busybox, "bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        tar.add(goroot, "usr/local/go")
    proc.stdin.close()
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    return GO_STAND_IN


@pytest.mark.timeout(600)
def test_make_up_builds_a_missing_probe_image_inside_docker(bare_env: dict[str, str]) -> None:
    tag = f"nl2sql-obs/probe:built-by-compose-{os.urandom(4).hex()}"
    bare_env.update({"PROBE_IMAGE": tag, "GO_IMAGE": _go_stand_in()})
    try:
        proc = _run(["make", "--no-print-directory", "up"], bare_env, timeout=420)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-5000:]
        assert _run(["docker", "image", "inspect", tag], bare_env).returncode == 0, (
            "compose built no probe image"
        )
        ps = _compose(bare_env, "ps", "--all", "--format", "json")
        health = {r["Service"]: r.get("Health") for r in map(json.loads, ps.stdout.splitlines()) if r}
        assert {health[s] for s in ("collector", "jaeger", "prometheus", "victorialogs")} == {"healthy"}, (
            health
        )
    finally:
        _compose(bare_env, "down", "--volumes", "--remove-orphans", "--timeout", "10")
        _run(["docker", "image", "rm", "-f", tag], bare_env)
