"""End to end on loopback with the real binaries: OTLP → collector (config.yaml) → Prometheus 3 OTLP
receiver (prometheus.yml's otlp section). The names the dashboards, rules and Jaeger's SPM read are the
names that actually land: contract histograms with units, promoted resource attributes, span metrics.
The contract's names come from docs/telemetry-contract.md itself."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nl2sql_observability import semconv as sc

from .conftest import ROOT, _free_port, load_yaml
from .promql_sources import Instrument, contract_instruments, prometheus_label
from .test_collector import BASE, _local_override


def _contract(name: str) -> Instrument:
    (inst,) = [i for i in contract_instruments() if i.name == name]
    return inst


NODE = _contract(sc.NODE_DURATION)
VALIDATIONS = _contract(sc.SQL_VALIDATIONS)
COST = _contract(sc.LLM_COST)


def test_the_contract_histograms_and_attributes_agree_with_the_package() -> None:
    by_name = {i.name: i for i in contract_instruments()}
    histograms = {name for name, i in by_name.items() if i.kind == "histogram"}
    assert histograms == {*sc.DURATION_METRICS, *sc.TOKEN_HISTOGRAMS}
    assert NODE.attributes >= {sc.NODE_NAME, sc.TENANT_ID, sc.ERROR_TYPE}
    for inst in by_name.values():
        assert not inst.attributes & sc.FORBIDDEN_METRIC_ATTRIBUTES, inst.name


def test_the_contract_prometheus_names_follow_prometheus_3_naming() -> None:
    """UnderscoreEscapingWithSuffixes: dots to underscores, `s` to _seconds, {annotations} dropped,
    counters get _total. A row whose Prometheus column disagrees is a typo in the contract."""
    for inst in contract_instruments():
        expected = inst.name.replace(".", "_") + ("_seconds" if inst.unit == "s" else "")
        expected += "_total" if inst.kind == "counter" else ""
        assert inst.prometheus == expected, inst


NOW = time.time_ns()


def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in d.items()]


RESOURCE = {"attributes": _attrs({"service.name": "nl2sql", "deployment.environment.name": "stackcheck"})}
TRACE = {
    "resourceSpans": [
        {
            "resource": RESOURCE,
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "name": "node generate_sql",
                            "kind": 1,
                            "startTimeUnixNano": str(NOW - 250_000_000),
                            "endTimeUnixNano": str(NOW),
                            "attributes": _attrs({"nl2sql.node.name": "generate_sql", "tenant.id": "acme"}),
                        }
                    ]
                }
            ],
        }
    ]
}
METRICS = {
    "resourceMetrics": [
        {
            "resource": RESOURCE,
            "scopeMetrics": [
                {
                    "metrics": [
                        {
                            "name": "nl2sql.node.duration",
                            "unit": "s",
                            "histogram": {
                                "aggregationTemporality": 2,
                                "dataPoints": [
                                    {
                                        "attributes": _attrs(
                                            {"nl2sql.node.name": "generate_sql", "tenant.id": "acme"}
                                        ),
                                        "startTimeUnixNano": str(NOW - 10**9),
                                        "timeUnixNano": str(NOW),
                                        "count": "1",
                                        "sum": 0.25,
                                        "bucketCounts": ["0", "1", "0"],
                                        "explicitBounds": [0.16, 0.32],
                                        "exemplars": [
                                            {
                                                "timeUnixNano": str(NOW),
                                                "asDouble": 0.25,
                                                "traceId": "5b8efff798038103d269b633813fc60c",
                                                "spanId": "eee19b7ec3c1b174",
                                            }
                                        ],
                                    }
                                ],
                            },
                        },
                        {
                            "name": "nl2sql.sql.validations",
                            "unit": "{validation}",
                            "sum": {
                                "aggregationTemporality": 2,
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "attributes": _attrs(
                                            {"nl2sql.validation.outcome": "failed", "tenant.id": "acme"}
                                        ),
                                        "startTimeUnixNano": str(NOW - 10**9),
                                        "timeUnixNano": str(NOW),
                                        "asInt": "1",
                                    }
                                ],
                            },
                        },
                        {
                            "name": "nl2sql.llm.cost",
                            "unit": "{USD}",
                            "sum": {
                                "aggregationTemporality": 2,
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "attributes": _attrs(
                                            {
                                                "gen_ai.request.model": "gpt-4o",
                                                "gen_ai.provider.name": "openai",
                                                "tenant.id": "acme",
                                                "nl2sql.node.name": "generate_sql",
                                            }
                                        ),
                                        "startTimeUnixNano": str(NOW - 10**9),
                                        "timeUnixNano": str(NOW),
                                        "asDouble": 0.0125,
                                    }
                                ],
                            },
                        },
                    ]
                }
            ],
        }
    ]
}


# A second service with a namespace and the same node name: Prometheus 3 names it job="shop/gateway".
GATEWAY = json.loads(json.dumps(METRICS))
GATEWAY["resourceMetrics"][0]["resource"] = {
    "attributes": _attrs(
        {"service.namespace": "shop", "service.name": "gateway", "deployment.environment.name": "stackcheck"}
    )
}
GATEWAY["resourceMetrics"][0]["scopeMetrics"][0]["metrics"] = GATEWAY["resourceMetrics"][0]["scopeMetrics"][
    0
]["metrics"][:1]


def _wait(url: str, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    pytest.fail(f"{url} not ready (exit {proc.returncode}): {err[-3000:]}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def landed(tool: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("pipeline")
    prom_port = _free_port()
    cfg = load_yaml(ROOT / "prometheus" / "prometheus.yml")
    cfg["scrape_configs"] = []  # no lookups of the compose service names from here
    cfg["rule_files"] = [str(ROOT / "prometheus" / "rules" / "*.yml")]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    prom = subprocess.Popen(
        [
            str(tool("prometheus")),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--web.enable-otlp-receiver",
            "--enable-feature=exemplar-storage,created-timestamp-zero-ingestion",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        _wait(f"{base}/-/ready", prom)
        override, ports = _local_override(tmp)
        extra = yaml.safe_load(override.read_text(encoding="utf-8"))
        extra["exporters"]["otlp_http/prometheus"] = {"endpoint": f"{base}/api/v1/otlp"}
        extra["connectors"] = {"span_metrics": {"metrics_flush_interval": "1s"}}
        override.write_text(yaml.safe_dump(extra), encoding="utf-8")
        col = subprocess.Popen(
            [str(tool("otelcol-nl2sql")), f"--config={BASE}", f"--config={override}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait(f"http://127.0.0.1:{ports['health']}/", col)
            for signal, payload in (("traces", TRACE), ("metrics", METRICS), ("metrics", GATEWAY)):
                req = urllib.request.Request(
                    f"http://127.0.0.1:{ports['http']}/v1/{signal}",
                    data=json.dumps(payload).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5):
                    pass
            wanted = {
                f"{NODE.prometheus}_bucket",
                "traces_span_metrics_calls_total",
                "traces_span_metrics_duration_seconds_bucket",
                VALIDATIONS.prometheus,
                COST.prometheus,
            }
            gateway = urllib.parse.urlencode({"match[]": f'{NODE.prometheus}_bucket{{job="shop/gateway"}}'})
            deadline = time.monotonic() + 30
            names: set[str] = set()
            have_gateway = False
            while time.monotonic() < deadline and not (wanted <= names and have_gateway):
                time.sleep(1)
                with urllib.request.urlopen(f"{base}/api/v1/label/__name__/values", timeout=5) as r:
                    names = set(json.load(r)["data"])
                with urllib.request.urlopen(f"{base}/api/v1/series?{gateway}", timeout=5) as r:
                    have_gateway = bool(json.load(r)["data"])
            series = {}
            for name in names:
                q = urllib.parse.urlencode({"match[]": name})
                with urllib.request.urlopen(f"{base}/api/v1/series?{q}", timeout=5) as r:
                    series[name] = json.load(r)["data"]
            q = urllib.parse.urlencode(
                {
                    "query": f"{NODE.prometheus}_bucket",
                    "start": NOW / 1e9 - 60,
                    "end": NOW / 1e9 + 60,
                }
            )
            with urllib.request.urlopen(f"{base}/api/v1/query_exemplars?{q}", timeout=5) as r:
                exemplars = json.load(r)["data"]
            yield {"names": names, "series": series, "exemplars": exemplars}
        finally:
            _stop(col)
    finally:
        _stop(prom)


def test_contract_histogram_lands_with_unit_suffix_and_promoted_environment(landed: dict[str, Any]) -> None:
    assert f"{NODE.prometheus}_bucket" in landed["names"], sorted(landed["names"])
    (s, *_) = landed["series"][f"{NODE.prometheus}_bucket"]
    assert s["deployment_environment_name"] == "stackcheck"
    assert s["job"] == "nl2sql"
    assert s[prometheus_label(sc.NODE_NAME)] == "generate_sql"
    assert s[prometheus_label(sc.TENANT_ID)] == "acme"


def test_counter_lands_with_total(landed: dict[str, Any]) -> None:
    (s, *_) = landed["series"][VALIDATIONS.prometheus]
    assert s[prometheus_label(sc.VALIDATION_OUTCOME)] == "failed"


def test_exemplar_carries_the_trace_id(landed: dict[str, Any]) -> None:
    labels = [e["labels"] for group in landed["exemplars"] for e in group["exemplars"]]
    assert {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174"} in labels, labels


def test_span_metrics_land_under_the_names_jaeger_spm_reads(landed: dict[str, Any]) -> None:
    jaeger = load_yaml(ROOT / "jaeger" / "config.yaml")
    (backend,) = jaeger["extensions"]["jaeger_storage"]["metric_backends"].values()
    ns = backend["prometheus"]["metric_namespace"]
    unit = {"s": "seconds", "ms": "milliseconds"}[backend["prometheus"]["latency_unit"]]
    for name in (f"{ns}_calls_total", f"{ns}_duration_{unit}_bucket"):
        assert name in landed["names"], f"{name} not in {sorted(n for n in landed['names'] if 'span' in n)}"
        s = landed["series"][name][0]
        # the labels Jaeger's SPM queries group and filter by
        assert {"service_name", "span_name", "span_kind", "status_code"} <= s.keys(), s
        assert s["nl2sql_node_name"] == "generate_sql"
        # per service and environment, like the contract metrics (SPM filters by service_name = job)
        assert s["job"] == s["service_name"] == "nl2sql", s
        assert s["deployment_environment_name"] == "stackcheck", s


def test_cost_counter_lands_with_total_and_the_service(landed: dict[str, Any]) -> None:
    (s,) = landed["series"][COST.prometheus]
    assert s["job"] == "nl2sql"
    assert s["deployment_environment_name"] == "stackcheck"
    assert {k: s[k] for k in ("gen_ai_request_model", "tenant_id", "nl2sql_node_name")} == {
        "gen_ai_request_model": "gpt-4o",
        "tenant_id": "acme",
        "nl2sql_node_name": "generate_sql",
    }


def test_two_services_with_one_node_name_land_as_two_series(landed: dict[str, Any]) -> None:
    """service.name (and service.namespace) become `job`: the rules and panels group by it."""
    jobs = {
        s["job"]
        for s in landed["series"][f"{NODE.prometheus}_bucket"]
        if s["nl2sql_node_name"] == "generate_sql" and s["le"] == "+Inf"
    }
    assert jobs == {"nl2sql", "shop/gateway"}, jobs
