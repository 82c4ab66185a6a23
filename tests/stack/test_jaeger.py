"""Jaeger v2: Badger on the volume with >= 72h retention, SPM names agree with the collector."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .conftest import ROOT, assert_ok, load_yaml, run

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
    assert prom["normalize_calls"] is True and prom["normalize_duration"] is True
    assert cfg["extensions"]["jaeger_query"]["storage"]["metrics"] in cfg["extensions"]["jaeger_storage"]["metric_backends"]
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
