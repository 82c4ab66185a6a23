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
SCALE = ROOT / "compose" / "docker-compose.scale.yml"
ENV_FILE = ROOT / "compose" / ".env"
# The versions the project chose (the spec the pins in compose/.env must follow)
DESIGN_TAGS = {
    "COLLECTOR_IMAGE": "otel/opentelemetry-collector-contrib:0.159.0",
    "JAEGER_IMAGE": "jaegertracing/jaeger:2.20.0",
    "PROMETHEUS_IMAGE": "prom/prometheus:v3.14.0",
    "GRAFANA_IMAGE": "grafana/grafana:13.2.0",
}
BACKENDS = {"collector", "jaeger", "prometheus", "victorialogs", "grafana"}


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
    e = {k: v for k, v in os.environ.items() if not k.endswith("_IMAGE") and k != "COMPOSE_FILE"}
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
    assert set(col["depends_on"]) == {"probe"}, "with a vendor backend the collector waits for no local one"


def test_every_published_port_is_on_loopback() -> None:
    for name, svc in render(COMPOSE)["services"].items():
        for p in svc.get("ports", []):
            assert p.get("host_ip") == "127.0.0.1", f"{name}: {p} is not bound to 127.0.0.1"


def test_images_pinned_in_env_only_and_overridable() -> None:
    env_lines = dict(
        line.split("=", 1)
        for line in ENV_FILE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    raw = load_yaml(COMPOSE)
    for var, tag in DESIGN_TAGS.items():
        assert env_lines.get(var) == tag, f".env {var}"
    for name, svc in raw["services"].items():
        m = re.fullmatch(r"\$\{(\w+_IMAGE)\}", svc["image"])
        assert m, f"{name}: image must be ${{X_IMAGE}}, its tag in compose/.env only"
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", env_lines[m.group(1)]), f"{m.group(1)}: not an exact tag"
    for f in (COMPOSE, VENDOR):
        assert ":-" not in f.read_text(encoding="utf-8"), f"{f.name}: a default outside compose/.env"
    rendered = render(COMPOSE, env={"JAEGER_IMAGE": "local/jaeger:dev"})
    assert rendered["services"]["jaeger"]["image"] == "local/jaeger:dev"


def test_no_copy_of_an_image_tag_outside_compose_env() -> None:
    pairs = (line.split("=", 1) for line in ENV_FILE.read_text(encoding="utf-8").splitlines() if "=" in line)
    tags = [v for k, v in pairs if k.endswith("_IMAGE") and not k.startswith("#")]
    places = [
        *(ROOT / "scripts").glob("*"),
        ROOT / "Makefile",
        *(ROOT / "tests" / "integration").glob("*.py"),
    ]
    for path in places:
        text = path.read_text(encoding="utf-8")
        assert not [t for t in tags if t in text], (
            f"{path.relative_to(ROOT)} repeats an image tag of compose/.env"
        )


def test_probe_is_built_in_docker_and_shared_by_volume() -> None:
    """`make up` needs no Go: compose builds the probe image itself; every healthcheck runs it."""
    services = render(COMPOSE)["services"]
    probe = services["probe"]
    assert probe["build"]["context"].endswith("tools/probe")
    assert (ROOT / "tools" / "probe" / "Dockerfile").is_file()
    assert probe["command"][:1] == ["-install"]
    assert any(v["source"] == "probe-bin" and not v.get("read_only") for v in probe["volumes"])
    for name in BACKENDS:
        svc = services[name]
        assert svc["healthcheck"]["test"][:2] == ["CMD", probe["command"][1]], name
        assert svc["depends_on"]["probe"]["condition"] == "service_completed_successfully", name
        assert any(v["source"] == "probe-bin" and v.get("read_only") for v in svc["volumes"]), name
    assert not [
        v for s in services.values() for v in s["volumes"] if v["type"] == "bind" and "probe" in v["target"]
    ]


def test_health_gated_with_limits_and_volumes() -> None:
    rendered = render(COMPOSE)
    services = rendered["services"]
    assert set(services) == BACKENDS | {"probe", "alertmanager"}
    for name, svc in services.items():
        assert svc["deploy"]["resources"]["limits"]["memory"], name
        for v in svc["volumes"]:
            if v["type"] == "bind":
                assert v.get("read_only"), f"{name}: config mount {v['target']} must be read-only"
        if name == "probe":
            continue
        assert svc["healthcheck"]["test"][0] == "CMD", name
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep != "probe":
                assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
    named = {v["source"] for s in services.values() for v in s["volumes"] if v["type"] == "volume"}
    assert named == {
        "probe-bin",
        "collector-queue",
        "jaeger-badger",
        "prometheus-data",
        "alertmanager-data",
        "victorialogs-data",
        "grafana-data",
    }
    assert services["collector"]["depends_on"].keys() == {"probe", "jaeger", "prometheus", "victorialogs"}
    # commands carry every argument (local FROM-scratch images have only an ENTRYPOINT)
    for name in ("collector", "jaeger", "prometheus", "alertmanager", "victorialogs"):
        assert services[name]["command"], name
    # Alertmanager: receivers' URLs from secret files (it expands no variables), Grafana sends to it
    am = services["alertmanager"]
    assert {s["source"] for s in am["secrets"]} == {"alert_page_webhook_url", "alert_ticket_webhook_url"}
    assert services["grafana"]["depends_on"]["alertmanager"]["condition"] == "service_healthy"
    prom = " ".join(services["prometheus"]["command"])
    for flag in (
        "--web.enable-otlp-receiver",
        "--enable-feature=exemplar-storage,created-timestamp-zero-ingestion",
        "--storage.tsdb.retention.time=15d",
    ):
        assert flag in prom


def test_log_store_hardened_with_retention_and_a_volume() -> None:
    vl = render(COMPOSE, env={"VICTORIALOGS_RETENTION": "30d"})["services"]["victorialogs"]
    assert "-retentionPeriod=30d" in vl["command"], "VICTORIALOGS_RETENTION must reach the flag"
    assert "-storageDataPath=/victoria-logs-data" in vl["command"]
    (data,) = [v for v in vl["volumes"] if v["type"] == "volume" and v["source"] == "victorialogs-data"]
    assert data["target"] == "/victoria-logs-data"
    assert vl["read_only"] is True
    assert vl["cap_drop"] == ["ALL"]
    assert vl["healthcheck"]["test"][-1] == "http://127.0.0.1:9428/health"
    assert [p["target"] for p in vl["ports"]] == [9428]


def test_grafana_has_no_default_password() -> None:
    grafana = render(COMPOSE)["services"]["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    text = COMPOSE.read_text(encoding="utf-8") + ENV_FILE.read_text(encoding="utf-8")
    assert not re.search(r"PASSWORD\s*[:=]\s*['\"]?admin\b", text, re.I)


def test_env_file_keys_are_used() -> None:
    text = "".join(f.read_text(encoding="utf-8") for f in (COMPOSE, VENDOR, SCALE))
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key = line.split("=", 1)[0]
            if key != "COMPOSE_PROJECT_NAME":
                assert "${" + key in text, f".env defines {key} but compose never uses it"
