"""docs/telemetry-contract.md, the package's semconv.py and the stack checks' label sets agree: the
metrics table's names, units, attributes and Prometheus names are the ones the code and the PromQL
checks use."""

from __future__ import annotations

import re

from nl2sql_observability import semconv as sc

from .conftest import ROOT
from .promql_sources import CONTRACT_LABELS

DOC = ROOT / "docs" / "telemetry-contract.md"
_ROW = re.compile(
    r"^\| `(?P<name>[a-z0-9_.]+)` (?P<kind>counter|histogram) \| `(?P<unit>[^`]+)` \| "
    r"(?P<attrs>.*?) \| `(?P<prom>[a-z0-9_]+)"
)


def _rows() -> dict[str, dict[str, str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            rows[m["name"]] = m.groupdict()
    return rows


def test_every_metric_of_the_package_is_in_the_contract_with_its_unit() -> None:
    rows = _rows()
    units = {
        sc.NODE_DURATION: sc.UNIT_SECONDS,
        sc.REQUEST_DURATION: sc.UNIT_SECONDS,
        sc.SQL_VALIDATIONS: sc.UNIT_VALIDATION,
        sc.LLM_TOKENS: sc.UNIT_TOKEN,
        sc.LLM_COST: sc.UNIT_USD,
        sc.LLM_UNPRICED_TOKENS: sc.UNIT_TOKEN,
        sc.GEN_AI_CLIENT_TOKEN_USAGE: sc.UNIT_TOKEN,
        sc.GEN_AI_CLIENT_OPERATION_DURATION: sc.UNIT_SECONDS,
    }
    assert len(rows) >= 8, f"the metrics table of {DOC.name} was not found"
    assert set(rows) == set(units), sorted(set(rows) ^ set(units))
    for name, unit in units.items():
        assert rows[name]["unit"] == unit, name


def test_prometheus_names_and_attributes_match_the_stack_checks() -> None:
    for name, row in _rows().items():
        prom = re.sub(r"_(bucket|sum|count)?$", "", row["prom"])
        assert prom in CONTRACT_LABELS, f"{name}: {prom} is not in promql_sources.CONTRACT_LABELS"
        if "GenAI semconv" in row["attrs"]:
            continue  # the semconv's own attribute set, spelled out in promql_sources
        attrs = {
            a.replace(".", "_") for a in re.findall(r"`([a-z0-9_.]+)`", re.sub(r"\(.*?\)", "", row["attrs"]))
        }
        assert attrs == CONTRACT_LABELS[prom], (
            f"{name}: doc {sorted(attrs)} != checks {sorted(CONTRACT_LABELS[prom])}"
        )


def test_chat_span_attributes_include_the_cost() -> None:
    chat = next(
        line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `chat {model}`")
    )
    for attr in (sc.GEN_AI_USAGE_COST_AMOUNT, sc.GEN_AI_USAGE_COST_CURRENCY):
        assert f"`{attr}`" in chat, attr
