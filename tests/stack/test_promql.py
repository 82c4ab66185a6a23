"""Every PromQL expression (dashboards, variables, recording rules, Grafana alert rules, datasource
links) parses with the real Prometheus parser and uses only names from the telemetry contract, the
recording rules, the span metrics or the collector's own metrics."""

from __future__ import annotations

import pytest

from .conftest import PromQLParser
from .promql_sources import (
    COLLECTOR_LABELS,
    RESOURCE_LABELS,
    SPAN_METRICS,
    Expr,
    all_exprs,
    contract_metrics,
    groupings,
    is_collector_metric,
    recording_rules,
    selectors,
)

EXPRS = all_exprs()


def test_there_are_expressions_from_every_source() -> None:
    wheres = " ".join(e.where for e in EXPRS)
    for source in (
        "nl2sql-overview.json",
        "telemetry-pipeline.json",
        "rules.yaml",
        "datasources.yaml",
        "rules/nl2sql.yml",
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
    known_labels = set().union(*contract.values(), *SPAN_METRICS.values(), COLLECTOR_LABELS, RESOURCE_LABELS)
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
        else:
            pytest.fail(
                f"{expr.where}: metric {name!r} is not in the contract, the recording rules, "
                "the span metrics or the collector's own metrics"
            )
        for m in sel["matchers"]:
            if m["name"] != "__name__":
                assert m["name"] in allowed, f"{expr.where}: {name} has no label {m['name']!r}"
    for label in groupings(ast):
        assert label in known_labels | {"le"}, f"{expr.where}: grouping by unknown label {label!r}"
