"""Prometheus: promtool checks the config and rules and runs the rule unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .conftest import ROOT, assert_ok, load_yaml, run

PROM = ROOT / "prometheus"


def test_check_config(tool: Callable[[str], Path]) -> None:
    # also checks every rule file the config loads (rules/*.yml)
    proc = run([tool("promtool"), "check", "config", PROM / "prometheus.yml"])
    assert_ok(proc)
    assert "rules/nl2sql.yml" in proc.stdout + proc.stderr


def test_check_rules(tool: Callable[[str], Path]) -> None:
    files = sorted((PROM / "rules").glob("*.yml")) + sorted((PROM / "tests").glob("slo-*.yml"))
    assert files
    assert_ok(run([tool("promtool"), "check", "rules", *files]))


def test_rule_unit_tests(tool: Callable[[str], Path]) -> None:
    tests = sorted((PROM / "tests").glob("*_test.yml"))
    assert tests
    assert_ok(run([tool("promtool"), "test", "rules", *tests]))


def test_config_has_what_the_stack_needs() -> None:
    cfg = load_yaml(PROM / "prometheus.yml")
    assert cfg["otlp"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    assert "deployment.environment.name" in cfg["otlp"]["promote_resource_attributes"]
    assert cfg["storage"]["tsdb"]["out_of_order_time_window"]
    assert cfg["storage"]["exemplars"]["max_exemplars"] > 0
    targets = {t for job in cfg["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert "collector:8888" in targets, "the collector's own metrics must be scraped"


def test_alert_mirrors_are_not_loaded_and_every_served_alert_is_generated() -> None:
    """Prometheus evaluates only generated alerts (prometheus/rules/slo-*.yml, from slo/nl2sql.yml);
    the promtool mirrors of Grafana's rules stay out of rule_files."""
    cfg = load_yaml(PROM / "prometheus.yml")
    assert all("tests" not in f for f in cfg["rule_files"])
    for f in (PROM / "rules").glob("*.yml"):
        alerts = [r["alert"] for group in load_yaml(f)["groups"] for r in group["rules"] if "alert" in r]
        if not f.name.startswith("slo-"):
            assert alerts == [], f"{f.name}: a hand-written alerting rule; add it to slo/nl2sql.yml"


def test_alerts_go_to_alertmanager() -> None:
    cfg = load_yaml(PROM / "prometheus.yml")
    targets = [
        t for am in cfg["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]
