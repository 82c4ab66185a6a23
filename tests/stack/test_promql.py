"""Every PromQL expression (dashboards, variables, recording rules, Grafana alert rules, datasource
links) parses with the real Prometheus parser and uses only names from the telemetry contract, the
recording rules, the span metrics or the collector's own metrics."""

from __future__ import annotations

import re

import pytest

from .conftest import PromQLParser
from .promql_sources import (
    COLLECTOR_LABELS,
    RESOURCE_LABELS,
    SERVICE_KEYS,
    SPAN_METRICS,
    Expr,
    all_exprs,
    contract_metrics,
    groupings,
    is_app_metric,
    is_collector_metric,
    merging_aggregations,
    recording_rules,
    selectors,
)

EXPRS = all_exprs()


def test_there_are_expressions_from_every_source() -> None:
    wheres = " ".join(e.where for e in EXPRS)
    for source in (
        "nl2sql-overview.json",
        "telemetry-pipeline.json",
        "slo-rules.yaml",
        "datasources.yaml",
        "rules/nl2sql.yml",
        "rules/slo-pipeline.yml",
    ):
        assert source in wheres, source


@pytest.mark.parametrize("expr", EXPRS, ids=[e.where for e in EXPRS])
def test_expression_parses_and_uses_known_names(expr: Expr, promql: PromQLParser) -> None:
    try:
        ast = promql.parse(expr.promql)
    except ValueError as err:
        pytest.fail(f"{expr.where}: does not parse: {err}\n{expr.promql}")
    contract = contract_metrics()
    recorded = recording_rules()
    # the labels recording rules attach (Sloth's sloth_id, sloth_slo, ...) are known too
    known_labels = set().union(
        *contract.values(), *SPAN_METRICS.values(), *recorded.values(), COLLECTOR_LABELS, RESOURCE_LABELS
    )
    for sel in selectors(ast):
        name = sel.get("name") or next((m["value"] for m in sel["matchers"] if m["name"] == "__name__"), "")
        assert name, f"{expr.where}: selector without a metric name"
        if name in contract:
            allowed = contract[name]
        elif name in SPAN_METRICS:
            allowed = SPAN_METRICS[name]
        elif name in recorded:
            allowed = known_labels
        elif is_collector_metric(name):
            allowed = COLLECTOR_LABELS
        elif name == "up":
            allowed = {"job", "instance"}
        elif name == "ALERTS":  # Prometheus' own series of its alerts: their labels plus the state
            allowed = known_labels | {"alertname", "alertstate", "severity", "slo"}
        else:
            pytest.fail(
                f"{expr.where}: metric {name!r} is not in the contract, the recording rules, "
                "the span metrics or the collector's own metrics"
            )
        for m in sel["matchers"]:
            if m["name"] != "__name__":
                assert m["name"] in allowed, f"{expr.where}: {name} has no label {m['name']!r}"
    # labels the expression makes itself: label_replace(v, "dst", "replacement", "src", "regex")
    made = set(re.findall(r'"(\w+)"\s*,\s*"[^"]*"\s*,\s*"\w+"\s*,\s*"[^"]*"\s*\)', expr.promql))
    for label in groupings(ast):
        assert label in known_labels | made | {"le"}, f"{expr.where}: grouping by unknown label {label!r}"


def _selector_name(sel: dict[str, object]) -> str:
    name = sel.get("name")
    if isinstance(name, str) and name:
        return name
    matchers = sel.get("matchers")
    assert isinstance(matchers, list)
    return next((str(m["value"]) for m in matchers if m["name"] == "__name__"), "")


# The Jaeger datasource's traces-to-metrics links are filtered to the span's own service by $__tags.
PER_SERVICE_EXPRS = [e for e in EXPRS if "tracesToMetrics" not in e.where]


@pytest.mark.parametrize("expr", PER_SERVICE_EXPRS, ids=[e.where for e in PER_SERVICE_EXPRS])
def test_app_metrics_are_never_merged_across_services(expr: Expr, promql: PromQLParser) -> None:
    """Prometheus 3 maps service.name to `job`: every sum/histogram_quantile over an app's data keeps
    `job` and `deployment_environment_name`, so two services with a `generate_sql` node stay two series."""
    ast = promql.parse(expr.promql)
    for op, grouping, without, sub in merging_aggregations(ast):
        names = {_selector_name(sel) for sel in selectors(sub)}
        if not any(is_app_metric(n) or n in SPAN_METRICS for n in names):
            continue
        if without:
            assert not SERVICE_KEYS & set(grouping), (
                f"{expr.where}: {op} without {grouping} drops the service"
            )
        else:
            assert set(grouping) >= SERVICE_KEYS, (
                f"{expr.where}: {op} by ({', '.join(grouping)}) merges services; add {sorted(SERVICE_KEYS)}"
            )
