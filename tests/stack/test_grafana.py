"""Grafana provisioning: fixed datasource uids, no ${DS_...}, alerting that can start and route."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .conftest import ROOT, load_yaml

GRAFANA = ROOT / "grafana"
PROV = GRAFANA / "provisioning"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Grafana's alert rules: the two generated from slo/nl2sql.yml (every other alert is Prometheus')
RULE_FILES = (PROV / "alerting" / "slo-rules.yaml",)
# their promtool mirror (not loaded by Prometheus)
MIRRORS = (ROOT / "prometheus" / "tests" / "slo-grafana-conditions.yml",)


def grafana_rules() -> list[dict[str, Any]]:
    return [r for f in RULE_FILES for g in load_yaml(f)["groups"] for r in g["rules"]]


def mirror_rules() -> list[dict[str, Any]]:
    return [r for f in MIRRORS for g in load_yaml(f)["groups"] for r in g["rules"]]


def datasource_uids() -> set[str]:
    return {ds["uid"] for f in (PROV / "datasources").glob("*.y*ml") for ds in load_yaml(f)["datasources"]}


def uids_in(obj: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        ds = obj.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            found.add(ds["uid"])
        for key in ("datasourceUid",):
            if isinstance(obj.get(key), str):
                found.add(obj[key])
        for v in obj.values():
            found |= uids_in(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= uids_in(v)
    return found


def test_datasources_have_fixed_uids_and_cross_links() -> None:
    assert datasource_uids() == {"prometheus", "jaeger", "victorialogs", "alertmanager"}
    (f,) = (PROV / "datasources").glob("*.y*ml")
    by_uid = {ds["uid"]: ds for ds in load_yaml(f)["datasources"]}
    # every alert and silence of the stack's Alertmanager; Grafana's rules reach it via the contact point
    am = by_uid["alertmanager"]
    assert (am["type"], am["url"], am["jsonData"]["implementation"]) == (
        "alertmanager",
        "http://alertmanager:9093",
        "prometheus",
    )
    dest = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert dest == [
        {"name": "trace_id", "datasourceUid": "jaeger", "urlDisplayLabel": dest[0]["urlDisplayLabel"]}
    ]
    assert by_uid["jaeger"]["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"
    # trace -> its log lines, and a log line -> its trace (the field the collector stores the id in)
    to_logs = by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "victorialogs"
    assert to_logs["query"] == 'trace_id:"$${__trace.traceId}"'
    (derived,) = by_uid["victorialogs"]["jsonData"]["derivedFields"]
    assert (derived["matcherType"], derived["matcherRegex"]) == ("label", "trace_id")
    assert derived["datasourceUid"] == "jaeger"
    assert by_uid["victorialogs"]["type"] == "victoriametrics-logs-datasource"


def test_no_ds_placeholders_anywhere() -> None:
    for f in GRAFANA.rglob("*"):
        if f.is_file():
            assert "${DS_" not in f.read_text(encoding="utf-8"), f


def test_dashboards_and_alerts_use_provisioned_uids() -> None:
    known = datasource_uids() | {"__expr__", "-- Grafana --", "grafana"}
    for f in DASHBOARDS:
        used = uids_in(json.loads(f.read_text(encoding="utf-8")))
        assert used, f.name
        assert used <= known, f"{f.name}: {sorted(used - known)}"
    for f in (PROV / "alerting").glob("*.y*ml"):
        used = uids_in(load_yaml(f))
        assert used <= known, f"{f.name}: {sorted(used - known)}"


def test_dashboards_unique_and_complete() -> None:
    docs = {f.name: json.loads(f.read_text(encoding="utf-8")) for f in DASHBOARDS}
    uids = [d["uid"] for d in docs.values()]
    assert len(uids) == len(set(uids))
    overview = docs["nl2sql-overview.json"]
    assert overview["uid"] == "nl2sql-overview"
    assert {v["name"] for v in overview["templating"]["list"]} >= {"env", "service", "tenant"}
    titles = " | ".join(p["title"] for p in overview["panels"]).lower()
    for words in (
        "requests and errors",
        "p50 / p95 / p99",
        "p95 latency per node",
        "validation failure rate",
        "tokens per second by tenant",
        "by model",
        "llm call latency",
        "top tenants",
        "cost per tenant",
        "cost per model",
        "unpriced tokens",
    ):
        assert words in titles, words
    # the 5% line on the validation panel, exemplars on latency panels
    (val,) = [p for p in overview["panels"] if "validation failure rate" in p["title"].lower()]
    steps = val["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert any(s["value"] == 0.05 for s in steps)
    assert any(t.get("exemplar") for p in overview["panels"] for t in p.get("targets", []))
    pipeline = docs["telemetry-pipeline.json"]
    exprs = " ".join(t["expr"] for p in pipeline["panels"] for t in p.get("targets", []))
    for name in ("accepted", "refused", "send_failed", "enqueue_failed", "queue_size", "queue_capacity"):
        assert name in exprs, name
    # the scale-out profile's row: load balancer outcomes and latency, sampler decisions, losses, late spans
    for name in (
        "loadbalancer_backend_outcome",
        "loadbalancer_backend_latency",
        "global_count_traces_sampled",
        "sampling_traces_on_memory",
        "sampler_traces_lost",
        "sampler_late_spans",
    ):
        assert name in exprs, name
    for d in docs.values():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), d["uid"]


def test_alerting_provisioning_can_start_and_route() -> None:
    alerting = PROV / "alerting"
    contact = load_yaml(alerting / "contact-points.yaml")
    policies = load_yaml(alerting / "policies.yaml")
    receivers = {cp["name"] for cp in contact["contactPoints"]}
    assert policies["policies"][0]["receiver"] in receivers
    dashboards = {json.loads(f.read_text(encoding="utf-8"))["uid"] for f in DASHBOARDS}
    all_rules = grafana_rules()
    assert {r["uid"] for r in all_rules} == {"nl2sql-slo-node-latency", "nl2sql-slo-sql-validation"}
    # every rule Grafana provisions is generated: no other alerting file holds rule groups
    with_groups = sorted(f.name for f in alerting.glob("*.y*ml") if load_yaml(f).get("groups"))
    assert with_groups == ["slo-rules.yaml"]
    # rules of earlier releases are deleted from an existing volume, and none of them is a live rule
    retired = {r["uid"] for r in load_yaml(alerting / "retired.yaml")["deleteRules"]}
    assert retired
    assert not retired & {r["uid"] for r in all_rules}
    for r in all_rules:
        assert r["for"] == "5m", r["uid"]
        refs = {q["refId"] for q in r["data"]}
        assert r["condition"] in refs, r["uid"]
        assert r["annotations"].get("__dashboardUid__", next(iter(dashboards))) in dashboards
        for q in r["data"]:
            if q["datasourceUid"] == "__expr__":
                assert q["model"]["expression"] in refs, r["uid"]


def _grafana_thresholds() -> dict[str, tuple[str, float]]:
    out = {}
    for r in grafana_rules():
        expr = next(q["model"]["expr"] for q in r["data"] if q["datasourceUid"] == "prometheus")
        cond = next(q for q in r["data"] if q["refId"] == r["condition"])["model"]["conditions"][0][
            "evaluator"
        ]
        out[expr.strip()] = (cond["type"], float(cond["params"][0]))
    return out


def test_grafana_alert_thresholds_match_the_promtool_tested_mirror() -> None:
    ops = {"gt": ">", "lt": "<"}
    grafana = _grafana_thresholds()
    mirrored = {}
    for r in mirror_rules():
        m = re.fullmatch(r"\s*(\S+)\s*([<>])\s*([0-9.eE+-]+)\s*", r["expr"])
        assert m, r["expr"]
        mirrored[m.group(1)] = (m.group(2), float(m.group(3)), r["for"])
    assert set(mirrored) == set(grafana)
    for expr, (op, value) in grafana.items():
        assert (ops[op], value) == mirrored[expr][:2], expr
        assert mirrored[expr][2] == "5m"


def _expanded_strings(obj: Any, in_rule: bool = False) -> Iterator[str]:
    """Every string Grafana's provisioning runs through env expansion: all of them, except an alert
    rule's annotations and query models, which it takes raw (grafana#54975; models keep $__macros)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if in_rule and k in ("annotations", "model"):
                continue
            yield from _expanded_strings(v, in_rule or k == "rules")
    elif isinstance(obj, list):
        for v in obj:
            yield from _expanded_strings(v, in_rule)
    elif isinstance(obj, str):
        yield obj


def test_no_literal_dollar_left_unescaped_in_provisioning() -> None:
    """Grafana expands $VAR in provisioning files: template/PromQL dollars in expanded fields are $$."""
    allowed_env = {"ALERTMANAGER_URL"}
    for f in PROV.rglob("*.y*ml"):
        for text in _expanded_strings(load_yaml(f)):
            for m in re.finditer(r"(\$+)\{?(\w+)", text):
                if len(m.group(1)) % 2 == 0:
                    continue  # $$: a literal dollar
                assert m.group(2) in allowed_env, (
                    f"{f.relative_to(ROOT)}: unescaped ${m.group(2)} in {text!r}"
                )


def test_grafana_mounts_match_provisioning_paths() -> None:
    provider = load_yaml(PROV / "dashboards" / "dashboards.yaml")["providers"][0]
    compose = (ROOT / "compose" / "docker-compose.yml").read_text(encoding="utf-8")
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in compose
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in compose


def test_dashboard_files_are_dashboards() -> None:
    for f in DASHBOARDS:
        d = json.loads(f.read_text(encoding="utf-8"))
        assert "dashboard" not in d, f"{f.name}: export the dashboard model, not the API wrapper"
        assert d.get("id") in (None,), f"{f.name}: no numeric id in provisioned dashboards"
        assert Path(f).suffix == ".json"


def test_the_service_variable_filters_every_app_query() -> None:
    """The overview's `service` variable lists `job` values and every query of app data filters by it."""
    overview = json.loads((GRAFANA / "dashboards" / "nl2sql-overview.json").read_text(encoding="utf-8"))
    (service,) = [v for v in overview["templating"]["list"] if v["name"] == "service"]
    assert re.search(r",\s*job\)\s*$", service["query"]["query"]), service["query"]
    names = [v["name"] for v in overview["templating"]["list"]]
    # tenant and node lists depend on the service chosen, so the variable comes before them
    assert names.index("service") < names.index("tenant") < names.index("node")
    for v in overview["templating"]["list"]:
        if v["name"] in ("tenant", "node"):
            assert 'job=~"$service"' in v["query"]["query"], v["name"]
    for p in overview["panels"]:
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if "nl2sql" in expr:
                assert expr.count('job=~"$service"') == expr.count("{"), (p["title"], expr)
                assert "{{job}}" in t.get("legendFormat", ""), (p["title"], t.get("legendFormat"))


def test_app_alerts_name_the_service() -> None:
    for r in grafana_rules():
        if r["uid"].startswith("nl2sql-"):
            for key in ("summary", "description"):
                assert 'index $labels "job"' in r["annotations"][key], (r["uid"], key)
    for r in mirror_rules():
        if r["alert"].startswith("NL2SQL"):
            assert "$labels.job" in r["annotations"]["summary"], r["alert"]
    policies = load_yaml(PROV / "alerting" / "policies.yaml")
    assert "job" in policies["policies"][0]["group_by"], (
        "alerts of two services must not share a notification"
    )


def test_alert_annotations_are_not_escaped_for_env_expansion() -> None:
    """Grafana's alert file provisioning expands $VAR in labels but takes annotations raw (grafana#54975),
    so "$$labels" in an annotation would reach the template as "$$labels" and fail to render."""
    for r in grafana_rules():
        for key, text in r["annotations"].items():
            assert "$$" not in text, (r["uid"], key, text)
        for key, text in (r.get("labels") or {}).items():
            assert "$" not in text, (r["uid"], key, "labels are env-expanded: write $$ for a literal $")


def test_datasource_plugins_are_installed_at_start() -> None:
    """Every datasource type Grafana does not ship is in the plugins compose has it install."""
    builtin = {"prometheus", "jaeger", "alertmanager"}
    types = {ds["type"] for f in (PROV / "datasources").glob("*.y*ml") for ds in load_yaml(f)["datasources"]}
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "compose" / ".env").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert types - builtin <= set(env["GRAFANA_PLUGINS"].split(","))
    compose = load_yaml(ROOT / "compose" / "docker-compose.yml")
    assert compose["services"]["grafana"]["environment"]["GF_PLUGINS_PREINSTALL_SYNC"] == "${GRAFANA_PLUGINS}"
