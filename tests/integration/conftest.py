"""Integration fixtures: the project's compose stack on local or official images, via testcontainers.

`make integration` (and CI) first runs scripts/build-tools.sh and scripts/build-images.sh, which
write the image names to images.env; this conftest points compose's image variables at them,
gives the run its own compose project name, ports and volumes, and removes everything at the end.
In CI (CI=true) a skipped integration test is turned into a failure, except the ones that need a
Grafana server, which skip with the reason "no Grafana image on this machine".
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stackkit import (
    BACKENDS,
    CI_SLO_FILE,
    COMPOSE_FILE,
    COMPOSE_OVERRIDES,
    FIGURES,
    GRAFANA_SKIP_REASON,
    IMAGE_VARS,
    IMAGES_ENV,
    ROOT,
    Stack,
    read_env_file,
    wait_until,
)

# testcontainers, offline: no Ryuk (its image cannot be pulled; fixtures clean up), and talk to the
# Docker engine on this host, not to the bridge gateway it would pick inside a container.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TC_HOST", "127.0.0.1")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """CI=true: any skip of an integration test is a failure, except the Grafana-server ones."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not _in_ci() or not report.skipped:
        return
    if not Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if GRAFANA_SKIP_REASON in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"integration test skipped in CI (CI=true), which counts as a failure: {reason}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES.values:
        return
    terminalreporter.section("nl2sql-observability integration figures")
    width = max(len(k) for k in FIGURES.values)
    for name, value in FIGURES.values.items():
        terminalreporter.write_line(f"{name:<{width}}  {value}")


def _docker_ok() -> str | None:
    if not shutil.which("docker"):
        return "the docker CLI is not installed (scripts/ci-prerequisites.sh installs it)"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        return f"no Docker engine: {proc.stderr.strip()[:300]}"
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return "no `docker compose` v2 plugin (scripts/build-tools.sh docker-compose installs it)"
    return None


def image_env() -> dict[str, str]:
    """Compose's image variables: from images.env, the environment winning."""
    env: dict[str, str] = {}
    if IMAGES_ENV.exists():
        env.update({k: v for k, v in read_env_file(IMAGES_ENV).items() if k in IMAGE_VARS})
    for key in IMAGE_VARS:
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def missing_images(env: dict[str, str]) -> str | None:
    """Why the integration stack cannot start from these images, or None."""
    missing = [k for k in IMAGE_VARS if k not in env]
    if missing:
        return f"{IMAGES_ENV} lacks {missing}: run `make images` (scripts/build-images.sh)"
    for key in IMAGE_VARS:
        proc = subprocess.run(["docker", "image", "inspect", env[key]], capture_output=True, check=False)
        if proc.returncode != 0:
            return f"image {env[key]} ({key}) is not on this machine: run `make images`"
    return None


def _ci_alert_rules(tmp: Path) -> Path:
    """A compose override whose Prometheus loads the product's rules plus the burn-rate rules that
    scripts/slo_rules.py generates from the test-only tests/integration/slo-ci.yml (test_9_alerts)."""
    rules = tmp / "rules"
    rules.mkdir()
    for f in (ROOT / "prometheus" / "rules").glob("*.yml"):
        shutil.copy(f, rules / f.name)
    gen = tmp / "generated"
    proc = subprocess.run(
        [sys.executable, ROOT / "scripts" / "slo_rules.py", "--slo-file", CI_SLO_FILE, "--out", gen],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copy(gen / "prometheus" / "rules" / "slo-burn-rates.yml", rules / "ci-slo-burn-rates.yml")
    # Prometheus runs as nobody: the copies must be readable by it
    rules.chmod(0o755)
    for f in rules.iterdir():
        f.chmod(0o644)
    override = tmp / "compose.ci-rules.yml"
    override.write_text(
        f"services:\n  prometheus:\n    volumes:\n      - {rules}:/etc/prometheus/rules:ro\n",
        encoding="utf-8",
    )
    return override


@contextlib.contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    files: list[Path] | None = None,
    services: tuple[str, ...] = BACKENDS,
    extra_env: dict[str, str] | None = None,
    label: str = "stack",
) -> Iterator[Stack]:
    """A compose project from these files (default: the base stack) with these services up and healthy,
    fresh volumes and ports; removed after."""
    problem = _docker_ok() or missing_images(env := image_env())
    if problem:
        pytest.skip(problem)

    secret = tmp_path_factory.mktemp("grafana") / "admin-password"
    secret.write_text("not-used-by-the-integration-tests\n")
    env["GRAFANA_ADMIN_PASSWORD_FILE"] = str(secret)
    # Alertmanager's receivers read their URLs from these files at each notification: tests that
    # start a receiver rewrite them in place (test_9_alerts). Nothing listens at the default.
    for kind in ("PAGE", "TICKET"):
        url_file = secret.parent / f"{kind.lower()}-webhook-url"
        url_file.write_text("http://127.0.0.1:9/nobody-listens")
        url_file.chmod(0o644)
        env[f"ALERT_{kind}_WEBHOOK_URL_FILE"] = str(url_file)
    env.update(extra_env or {})
    s = Stack(env=env, wait_for=services)
    if files is not None:
        s.files = files

    from testcontainers.compose import DockerCompose

    saved = {k: os.environ.get(k) for k in s.env}
    os.environ.update(s.env)  # DockerCompose runs `docker compose` with this process's environment
    compose = DockerCompose(
        context=str(ROOT),
        compose_file_name=[str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f) for f in s.files],
        services=list(services),  # Grafana is left out: its image can't be pulled or built here
        wait=True,
        pull=False,
    )
    t0 = time.monotonic()
    try:
        compose.start()
        s.wait_healthy(timeout=120)
        FIGURES.put(f"{label} start-up to healthy", f"{time.monotonic() - t0:.1f}s ({', '.join(services)})")
        FIGURES.put("images", ", ".join(f"{k}={env[k]}" for k in IMAGE_VARS))
        wait_until(
            lambda: s.get_json(f"{s.prometheus}/api/v1/status/buildinfo"), timeout=60, what="Prometheus API"
        )
        wait_until(lambda: s.get_json(f"{s.jaeger}/api/services") is not None, timeout=60, what="Jaeger API")
        wait_until(lambda: s.logs("*", limit=1) is not None, timeout=60, what="VictoriaLogs API")
        if "alertmanager" in services:
            wait_until(
                lambda: s.get_json(f"{s.alertmanager}/api/v2/status"), timeout=60, what="Alertmanager API"
            )
        yield s
    finally:
        try:
            logs = s.compose("logs", "--no-color", "--tail", "200", check=False).stdout
            (ROOT / ".pytest_cache").mkdir(exist_ok=True)
            (ROOT / ".pytest_cache" / f"{s.project}-compose.log").write_text(logs)
        finally:
            s.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="session")
def stack_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., contextlib.AbstractContextManager[Stack]]:
    """running_stack for a test module that needs another profile (e.g. the scale-out overlay)."""
    return functools.partial(running_stack, tmp_path_factory)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack (collector, Jaeger, Prometheus, VictoriaLogs) up and healthy, with fresh volumes;
    removed after."""
    files = [COMPOSE_FILE, *COMPOSE_OVERRIDES, _ci_alert_rules(tmp_path_factory.mktemp("ci-rules"))]
    with running_stack(tmp_path_factory, files=files) as s:
        yield s


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nl2sql-it-") as d:
        yield Path(d)
