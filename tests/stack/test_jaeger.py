"""Jaeger v2: Badger on the volume with >= 72h retention, SPM names agree with the collector."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, _free_port, assert_ok, load_yaml, run

JAEGER = ROOT / "jaeger" / "config.yaml"


def hours(d: str) -> float:
    units = {"h": 1.0, "m": 1 / 60, "s": 1 / 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", d))


def test_badger_persistent_with_72h_retention() -> None:
    cfg = load_yaml(JAEGER)
    (backend,) = cfg["extensions"]["jaeger_storage"]["backends"].values()
    badger = backend["badger"]
    assert badger["ephemeral"] is False
    assert hours(badger["ttl"]["spans"]) >= 72
    assert badger["directories"]["keys"].startswith("/badger/")
    compose = load_yaml(ROOT / "compose" / "docker-compose.yml")
    assert "jaeger-badger:/badger" in compose["services"]["jaeger"]["volumes"]


def test_spm_reads_the_span_metrics_the_collector_writes() -> None:
    cfg = load_yaml(JAEGER)
    (metrics,) = cfg["extensions"]["jaeger_storage"]["metric_backends"].values()
    prom = metrics["prometheus"]
    span_metrics = load_yaml(ROOT / "collector" / "config.yaml")["connectors"]["span_metrics"]
    assert prom["metric_namespace"] == span_metrics["namespace"].replace(".", "_")
    assert prom["latency_unit"] == span_metrics["histogram"]["unit"]
    # Prometheus 3 with UnderscoreEscapingWithSuffixes adds _total and the unit: Jaeger must expect both.
    assert prom["normalize_calls"] is True
    assert prom["normalize_duration"] is True
    assert (
        cfg["extensions"]["jaeger_query"]["storage"]["metrics"]
        in cfg["extensions"]["jaeger_storage"]["metric_backends"]
    )
    assert prom["endpoint"] == "http://prometheus:9090"


def test_health_check_matches_compose() -> None:
    cfg = load_yaml(JAEGER)
    hc = cfg["extensions"]["healthcheckv2"]["http"]
    compose = load_yaml(ROOT / "compose" / "docker-compose.yml")
    test = compose["services"]["jaeger"]["healthcheck"]["test"]
    port = hc["endpoint"].rsplit(":", 1)[1]
    assert test[-1] == f"http://127.0.0.1:{port}{hc['status']['path']}"


def test_validate(tool: Callable[[str], Path]) -> None:
    assert_ok(run([tool("jaeger"), "validate", f"--config={JAEGER}"]))


@pytest.mark.timeout(120)
def test_jaeger_starts_healthy_with_badger_and_spm(tool: Callable[[str], Path], tmp_path: Path) -> None:
    """A real start (loopback ports, Badger in a temp dir, Prometheus at a closed local port)."""
    ports = {k: _free_port() for k in ("health", "http", "grpc", "otlp_grpc", "otlp_http", "metrics")}
    override = {
        "extensions": {
            "healthcheckv2": {"http": {"endpoint": f"127.0.0.1:{ports['health']}"}},
            "jaeger_query": {
                "ui": {"config_file": str(ROOT / "jaeger" / "ui-config.json")},
                "http": {"endpoint": f"127.0.0.1:{ports['http']}"},
                "grpc": {"endpoint": f"127.0.0.1:{ports['grpc']}"},
            },
            "jaeger_storage": {
                "backends": {
                    "badger_store": {
                        "badger": {
                            "directories": {
                                "keys": str(tmp_path / "keys"),
                                "values": str(tmp_path / "values"),
                            }
                        }
                    }
                },
                "metric_backends": {"prometheus_store": {"prometheus": {"endpoint": "http://127.0.0.1:9"}}},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{ports['otlp_grpc']}"},
                    "http": {"endpoint": f"127.0.0.1:{ports['otlp_http']}"},
                }
            }
        },
        "service": {
            "telemetry": {
                "metrics": {
                    "readers": [
                        {
                            "pull": {
                                "exporter": {"prometheus": {"host": "127.0.0.1", "port": ports["metrics"]}}
                            }
                        }
                    ]
                }
            }
        },
    }
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(override), encoding="utf-8")
    proc = subprocess.Popen(
        [str(tool("jaeger")), f"--config={JAEGER}", f"--config={tmp_path / 'local.yaml'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = None
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports['health']}/status", timeout=2) as r:
                    status = json.load(r)
                    break
            except OSError:
                time.sleep(0.3)
        if not status or not status.get("healthy"):
            proc.terminate()
            _, err = proc.communicate(timeout=20)
            pytest.fail(
                f"jaeger not healthy within 45s (status {status}, exit {proc.returncode}):\n{err[-4000:]}"
            )
        # the Monitor tab's API is wired to the Prometheus metrics store (which is down here)
        url = f"http://127.0.0.1:{ports['http']}/api/metrics/calls?service=nl2sql"
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(url, timeout=5)
        body = raised.value.read().decode()
        assert "metrics query" in body, f"SPM is not backed by the Prometheus metrics store: {body}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
