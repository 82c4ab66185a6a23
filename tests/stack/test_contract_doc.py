"""docs/telemetry-contract.md and the package's semconv.py agree: the metrics table's names and units
are the ones the code uses. (The PromQL checks read their names and labels from the same table,
through promql_sources.contract_instruments.)"""

from __future__ import annotations

from nl2sql_observability import semconv as sc

from .promql_sources import CONTRACT as DOC
from .promql_sources import contract_instruments


def test_every_metric_of_the_package_is_in_the_contract_with_its_unit() -> None:
    rows = {i.name: i for i in contract_instruments()}
    units = {
        sc.NODE_DURATION: sc.UNIT_SECONDS,
        sc.REQUEST_DURATION: sc.UNIT_SECONDS,
        sc.SQL_VALIDATIONS: sc.UNIT_VALIDATION,
        sc.LLM_TOKENS: sc.UNIT_TOKEN,
        sc.LLM_COST: sc.UNIT_USD,
        sc.LLM_UNPRICED_TOKENS: sc.UNIT_TOKEN,
        sc.GEN_AI_CLIENT_TOKEN_USAGE: sc.UNIT_TOKEN,
        sc.GEN_AI_CLIENT_OPERATION_DURATION: sc.UNIT_SECONDS,
        sc.AUDIT_EVICTED_EVENTS: sc.UNIT_EVENT,
        sc.AUDIT_EVENTS: sc.UNIT_EVENT,
        sc.REQUESTS: sc.UNIT_REQUEST,
        sc.EVALUATIONS: sc.UNIT_EVALUATION,
    }
    assert len(rows) >= 8, f"the metrics table of {DOC.name} was not found"
    assert set(rows) == set(units), sorted(set(rows) ^ set(units))
    for name, unit in units.items():
        assert rows[name].unit == unit, name


def test_chat_span_attributes_include_the_cost() -> None:
    chat = next(
        line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `chat {model}`")
    )
    for attr in (sc.GEN_AI_USAGE_COST_AMOUNT, sc.GEN_AI_USAGE_COST_CURRENCY):
        assert f"`{attr}`" in chat, attr
