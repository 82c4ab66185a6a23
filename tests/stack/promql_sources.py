"""Every PromQL expression the stack ships, with where it comes from, and the names it may use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .conftest import ROOT, load_yaml

GRAFANA = ROOT / "grafana"
PROM = ROOT / "prometheus"

DURATION = ("bucket", "sum", "count")
CONTRACT = ROOT / "docs" / "telemetry-contract.md"


@dataclass(frozen=True)
class Instrument:
    """One row of the contract's Metrics table."""

    name: str  # the OTel instrument name, e.g. nl2sql.node.duration
    kind: str  # histogram | counter
    unit: str
    attributes: frozenset[str]
    prometheus: str  # the base name Prometheus 3 stores it under (histograms: without _bucket/_sum/_count)
    native: bool = False  # an exponential histogram, stored as one native histogram series


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def contract_instruments(text: str | None = None) -> list[Instrument]:
    """The Metrics table of docs/telemetry-contract.md. Attribute values in parentheses, e.g.
    (`passed`/`failed`), are not attribute names; `error.type`? marks an optional attribute."""
    lines = (CONTRACT.read_text() if text is None else text).splitlines()
    start = lines.index("## Metrics")
    rows = [line for line in lines[start:] if line.startswith("| `")]
    out = []
    for row in rows[: next((i for i, r in enumerate(rows) if not r.startswith("| `")), len(rows))]:
        instrument, unit, attributes, prom = (c.strip() for c in row.strip("|").split("|"))
        (name,) = _ticked(instrument)
        base = _ticked(prom)[0].removesuffix("_*").removesuffix("_bucket/_sum/_count")
        out.append(
            Instrument(
                name=name,
                kind=instrument.split()[-1],
                unit=_ticked(unit)[0],
                attributes=frozenset(_ticked(re.sub(r"\([^)]*\)", "", attributes))),
                prometheus=base,
                native="native histogram" in prom,
            )
        )
    return out


def prometheus_label(attribute: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


# service.name → job, service.instance.id → instance, plus prometheus.yml's promote_resource_attributes.
RESOURCE_LABELS = {"job", "instance", "deployment_environment_name", "service_version"}


def contract_metrics() -> dict[str, set[str]]:
    """Every series the contract's instruments land as in Prometheus, with the labels each may have."""
    out: dict[str, set[str]] = {}
    for inst in contract_instruments():
        labels = {prometheus_label(a) for a in inst.attributes} | RESOURCE_LABELS
        if inst.native:
            out[inst.prometheus] = labels
        elif inst.kind == "histogram":
            for suffix in DURATION:
                out[f"{inst.prometheus}_{suffix}"] = labels | ({"le"} if suffix == "bucket" else set())
        else:
            out[inst.prometheus] = labels
    return out


# Span metrics (span_metrics connector, namespace traces.span.metrics, unit s): Jaeger SPM and Grafana.
SPAN_METRICS = {
    name: {
        "service_name",
        "span_name",
        "span_kind",
        "status_code",
        "nl2sql_node_name",
        "gen_ai_request_model",
        "tenant_id",
        "job",
        "instance",
        "deployment_environment_name",
        "le",
    }
    for name in (
        "traces_span_metrics_calls_total",
        "traces_span_metrics_duration_seconds_bucket",
        "traces_span_metrics_duration_seconds_sum",
        "traces_span_metrics_duration_seconds_count",
    )
}
COLLECTOR_LABELS = {
    "job",
    "instance",
    "receiver",
    "exporter",
    "processor",
    "transport",
    "data_type",
    "otel_signal",
    "service_name",
    "service_instance_id",
    "service_version",
}


_SIGNALS = ("spans", "metric_points", "log_records")
# The collector's own metrics as Prometheus scrapes them from otelcol-nl2sql 0.159 (no _total or unit
# suffixes: collector/config.yaml sets without_type_suffix/without_units). test_collector checks these
# against the running binary and exporterhelper's metadata.yaml.
COLLECTOR_METRICS = {
    *(f"otelcol_receiver_{kind}_{s}" for kind in ("accepted", "refused", "failed") for s in _SIGNALS),
    *(f"otelcol_exporter_{kind}_{s}" for kind in ("sent", "send_failed", "enqueue_failed") for s in _SIGNALS),
    "otelcol_exporter_queue_size",
    "otelcol_exporter_queue_capacity",
    "otelcol_process_memory_rss",
    "otelcol_process_runtime_heap_alloc_bytes",
    "otelcol_process_cpu_seconds",
    "otelcol_process_uptime",
}


# The scale-out profile's tiers (collector/agent.yaml, collector/sampler.yaml): the agent's load_balancing
# exporter and the samplers' tail_sampling processor, named as in their metadata (documentation.md);
# tests/stack/test_scale_out.py checks them against the running binaries.
SCALE_OUT_METRICS = {
    "otelcol_loadbalancer_backend_outcome",
    "otelcol_loadbalancer_backend_latency_bucket",
    "otelcol_loadbalancer_num_backends",
    "otelcol_processor_tail_sampling_global_count_traces_sampled",
    "otelcol_processor_tail_sampling_count_traces_sampled",
    "otelcol_processor_tail_sampling_sampling_traces_on_memory",
    "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early",
    "otelcol_processor_tail_sampling_traces_dropped_too_large",
    "otelcol_processor_tail_sampling_sampling_late_span_age_count",
}
COLLECTOR_LABELS |= {"success", "endpoint", "resolver", "sampled", "policy", "decision"}


def is_collector_metric(name: str) -> bool:
    return name in COLLECTOR_METRICS or name in SCALE_OUT_METRICS


def recording_rules() -> dict[str, set[str]]:
    """Recorded name → labels it may carry (by-clause labels of its expression, loosely: all known)."""
    names: dict[str, set[str]] = {}
    for f in sorted((PROM / "rules").glob("*.yml")):
        for group in load_yaml(f)["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    names.setdefault(rule["record"], set()).update(rule.get("labels") or {})
    return names


@dataclass(frozen=True)
class Expr:
    where: str
    grafana: str  # the text as written (may hold Grafana variables)

    @property
    def promql(self) -> str:
        """Grafana variables replaced by values of the right kind, so the real parser can judge it."""
        e = self.grafana.replace("$$", "$")
        e = e.replace("$__tags", 'service_name="nl2sql"')
        e = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", e)
        e = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", ".*", e)
        return e


def _dashboard_exprs() -> Iterator[Expr]:
    for f in sorted((GRAFANA / "dashboards").glob("*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))

        def panels(ps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for p in ps:
                yield p
                yield from panels(p.get("panels", []))

        for p in panels(d.get("panels", [])):
            for t in p.get("targets", []):
                if t.get("expr") and (t.get("datasource") or {}).get("type", "prometheus") == "prometheus":
                    yield Expr(f"{f.name} panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"])
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if v.get("type") == "query" and q:
                m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", q)
                yield Expr(f"{f.name} variable {v['name']}", m.group(1) if m else q)


def _alert_rule_exprs() -> Iterator[Expr]:
    for f in sorted((GRAFANA / "provisioning" / "alerting").glob("*.y*ml")):
        doc = load_yaml(f) or {}
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                for q in rule.get("data", []):
                    if q.get("datasourceUid") != "__expr__" and "expr" in q.get("model", {}):
                        yield Expr(f"{f.name} rule {rule['uid']} {q['refId']}", q["model"]["expr"])


def _datasource_exprs() -> Iterator[Expr]:
    for f in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in load_yaml(f).get("datasources", []):
            for q in ds.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
                yield Expr(f"{f.name} {ds['uid']} tracesToMetrics '{q['name']}'", q["query"])


def _rule_file_exprs() -> Iterator[Expr]:
    for f in sorted((PROM / "rules").glob("*.yml")):
        for group in load_yaml(f)["groups"]:
            for rule in group["rules"]:
                yield Expr(f"{f.relative_to(PROM)} {rule.get('record') or rule.get('alert')}", rule["expr"])


def all_exprs() -> list[Expr]:
    return [*_dashboard_exprs(), *_alert_rule_exprs(), *_datasource_exprs(), *_rule_file_exprs()]


def selectors(ast: Any) -> Iterator[dict[str, Any]]:
    if isinstance(ast, dict):
        if ast.get("type") in ("vectorSelector", "matrixSelector"):
            yield ast
        for v in ast.values():
            yield from selectors(v)
    elif isinstance(ast, list):
        for v in ast:
            yield from selectors(v)


# An app service's data: what must never be aggregated across services or environments.
SERVICE_KEYS = frozenset({"job", "deployment_environment_name"})
# Aggregations that keep each series' labels (they pick series, they do not merge them).
_SELECTING = {"topk", "bottomk", "limitk", "limit_ratio"}


def is_app_metric(name: str) -> bool:
    """A metric an app service sends (the contract's, or recorded from them), as opposed to the
    collector's own or a scrape's `up`."""
    return name in contract_metrics() or name.startswith("nl2sql:")


def merging_aggregations(ast: Any) -> Iterator[tuple[str, list[str], bool, Any]]:
    """(op, grouping, without, subtree) of every aggregation that merges series."""
    if isinstance(ast, dict):
        if ast.get("type") == "aggregation" and ast.get("op") not in _SELECTING:
            yield (
                ast.get("op", ""),
                list(ast.get("grouping") or []),
                bool(ast.get("without")),
                ast.get("expr"),
            )
        for v in ast.values():
            yield from merging_aggregations(v)
    elif isinstance(ast, list):
        for v in ast:
            yield from merging_aggregations(v)


def groupings(ast: Any) -> Iterator[str]:
    if isinstance(ast, dict):
        if ast.get("type") == "aggregation":
            yield from ast.get("grouping") or []
        for v in ast.values():
            yield from groupings(v)
    elif isinstance(ast, list):
        for v in ast:
            yield from groupings(v)
