"""docker-compose.yml: valid for the compose v2 CLI, pinned images, loopback ports, health-gated."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .conftest import ROOT, TOOLS, assert_ok, load_yaml, missing, run

COMPOSE = ROOT / "compose" / "docker-compose.yml"
VENDOR = ROOT / "compose" / "docker-compose.vendor.yml"
ENV_FILE = ROOT / "compose" / ".env"
DESIGN_TAGS = {
    "COLLECTOR_IMAGE": "otel/opentelemetry-collector-contrib:0.159.0",
    "JAEGER_IMAGE": "jaegertracing/jaeger:2.20.0",
    "PROMETHEUS_IMAGE": "prom/prometheus:v3.14.0",
    "GRAFANA_IMAGE": "grafana/grafana:13.2.0",
}


VENDOR_ENV = {
    "OTLP_VENDOR_ENDPOINT": "https://otlp.example.invalid",
    "OTLP_VENDOR_HEADER_NAME": "x-honeycomb-team",
    "OTLP_VENDOR_HEADER_VALUE": "test-key",
}


def compose_cli() -> list[str]:
    path = TOOLS / "docker-compose"
    if path.is_file() and os.access(path, os.X_OK):
        return [str(path)]
    if shutil.which("docker"):
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if ok.returncode == 0:
            return ["docker", "compose"]
    missing(f"the docker compose v2 CLI is not in {TOOLS}")
    raise AssertionError("unreachable")


def render(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [*compose_cli()]
    for f in files:
        cmd += ["-f", str(f)]
    # the repository's defaults, not whatever a developer's shell exports
    e = {k: v for k, v in os.environ.items() if k not in DESIGN_TAGS and k != "COMPOSE_FILE"}
    e["PROBE_BIN"] = "/nonexistent/probe"
    e.update(env or {})
    proc = subprocess.run(
        [*cmd, "config", "--format", "json"], capture_output=True, text=True, env=e, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_config_quiet() -> None:
    cmd = compose_cli()
    assert_ok(run([*cmd, "-f", COMPOSE, "config", "-q"]))


def test_vendor_overlay_config() -> None:
    cmd = compose_cli()
    proc = run(
        [*cmd, "-f", COMPOSE, "-f", VENDOR, "config", "-q"],
        env=VENDOR_ENV,
    )
    assert_ok(proc)
    rendered = render(COMPOSE, VENDOR, env=VENDOR_ENV)
    col = rendered["services"]["collector"]
    assert "--config=/etc/otelcol/overlay-vendor.yaml" in col["command"]
    assert not col.get("depends_on"), "with a vendor backend the collector must not wait for local ones"


def test_every_published_port_is_on_loopback() -> None:
    for name, svc in render(COMPOSE)["services"].items():
        for p in svc.get("ports", []):
            assert p.get("host_ip") == "127.0.0.1", f"{name}: {p} is not bound to 127.0.0.1"


def test_images_pinned_and_overridable() -> None:
    env_lines = dict(
        line.split("=", 1)
        for line in ENV_FILE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    raw = load_yaml(COMPOSE)
    for var, tag in DESIGN_TAGS.items():
        assert env_lines.get(var) == tag, f".env {var}"
    for name, svc in raw["services"].items():
        m = re.fullmatch(r"\$\{(\w+_IMAGE):-([^}]+)\}", svc["image"])
        assert m, f"{name}: image must be ${{X_IMAGE:-tag}}"
        assert DESIGN_TAGS[m.group(1)] == m.group(2), name
    rendered = render(COMPOSE, env={"JAEGER_IMAGE": "local/jaeger:dev"})
    assert rendered["services"]["jaeger"]["image"] == "local/jaeger:dev"


def test_health_gated_with_limits_and_volumes() -> None:
    rendered = render(COMPOSE)
    services = rendered["services"]
    assert set(services) == {"collector", "jaeger", "prometheus", "grafana"}
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert test[:2] == ["CMD", "/probe"], f"{name}: healthcheck must use the mounted static probe"
        assert any(v.get("target") == "/probe" and v.get("read_only") for v in svc["volumes"]), name
        assert svc["deploy"]["resources"]["limits"]["memory"], name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
        for v in svc["volumes"]:
            if v["type"] == "bind" and v["target"] != "/probe":
                assert v.get("read_only"), f"{name}: config mount {v['target']} must be read-only"
    named = {
        v["source"]: (name, v["target"])
        for name, s in services.items()
        for v in s["volumes"]
        if v["type"] == "volume"
    }
    assert set(named) == {"collector-queue", "jaeger-badger", "prometheus-data", "grafana-data"}
    assert services["collector"]["depends_on"].keys() == {"jaeger", "prometheus"}
    # commands carry every argument (local FROM-scratch images have only an ENTRYPOINT)
    for name in ("collector", "jaeger", "prometheus"):
        assert services[name]["command"], name
    prom = " ".join(services["prometheus"]["command"])
    for flag in (
        "--web.enable-otlp-receiver",
        "--enable-feature=exemplar-storage,created-timestamp-zero-ingestion",
        "--storage.tsdb.retention.time=15d",
    ):
        assert flag in prom


def test_grafana_has_no_default_password() -> None:
    grafana = render(COMPOSE)["services"]["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    text = COMPOSE.read_text(encoding="utf-8") + ENV_FILE.read_text(encoding="utf-8")
    assert not re.search(r"PASSWORD\s*[:=]\s*['\"]?admin\b", text, re.I)


def test_env_file_keys_are_used() -> None:
    text = COMPOSE.read_text(encoding="utf-8") + VENDOR.read_text(encoding="utf-8")
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key = line.split("=", 1)[0]
            if key != "COMPOSE_PROJECT_NAME":
                assert "${" + key in text, f".env defines {key} but compose never uses it"
