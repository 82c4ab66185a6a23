"""Two services in one environment, and cost per tenant, against the real backends.

Two demo processes run at the same time with different `OTEL_SERVICE_NAME`s and the same
`deployment.environment.name`: service A never fails validation, service B fails about half of its
questions, and B prices the demo's model from its own `OBSERVABILITY_PRICES_FILE`. Both graphs have
the same node names. The recording rules, the alert condition, Jaeger and its SPM must keep the two
apart (Prometheus 3 maps service.name to `job`), and each service's cost per tenant in Prometheus must
equal that demo's own token totals times the price table it used.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from demo import DemoRun, demo
from stackkit import FIGURES, ROOT, Stack, wait_until

# the SLO rules Grafana evaluates, generated from slo/nl2sql.yml
ALERT_RULES = ROOT / "grafana" / "provisioning" / "alerting" / "slo-rules.yaml"
PACKAGED_PRICES = ROOT / "bootstrap" / "nl2sql_observability" / "prices.json"
DEMO_MODEL = "nl2sql-sim-1"  # nl2sql_observability.demo.llm.MODEL_NAME


@dataclass
class Service:
    name: str
    run: DemoRun
    prices: Path  # the file this service's price for the demo model comes from

    def model_price(self) -> tuple[float, float]:
        entry = json.loads(self.prices.read_text())["models"][DEMO_MODEL]
        return float(entry["input"]), float(entry["output"])


@dataclass
class TwoServices:
    environment: str
    a: Service
    b: Service


@pytest.fixture(scope="module")
def two(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> TwoServices:
    tag = uuid.uuid4().hex[:8]
    environment = f"it-two-{tag}"
    work = tmp_path_factory.mktemp("two-services")
    prices_b = work / "prices-b.json"
    prices_b.write_text(
        json.dumps(
            {
                "unit": "USD per 1M tokens",
                "models": {
                    DEMO_MODEL: {
                        "input": 7.5,
                        "output": 30.0,
                        "source": "integration test: service B's own price",
                        "date": "2026-11-24",
                    }
                },
            }
        )
    )
    common = {"OBSERVABILITY_ENVIRONMENT": environment}
    run_a = demo(
        stack,
        work / "a",
        requests=60,  # above the validation alert's traffic floor (50 in 15m, slo/nl2sql.yml)
        failure_rate=0.0,
        seed=21,
        tenants=("acme", "globex"),
        extra_env={**common, "OTEL_SERVICE_NAME": f"nl2sql-a-{tag}"},
    )
    run_b = demo(
        stack,
        work / "b",
        requests=60,  # above the validation alert's traffic floor (50 in 15m, slo/nl2sql.yml)
        failure_rate=0.5,
        seed=22,
        tenants=("acme", "initech"),
        extra_env={
            **common,
            "OTEL_SERVICE_NAME": f"nl2sql-b-{tag}",
            "OBSERVABILITY_PRICES_FILE": str(prices_b),
        },
    )
    run_a.start()
    run_b.start()
    run_a.wait().check()
    run_b.wait().check()
    FIGURES.put(
        "two services side by side (2 x 60 questions)", f"{max(run_a.wall_s, run_b.wall_s):.1f}s wall"
    )
    return TwoServices(
        environment,
        Service(f"nl2sql-a-{tag}", run_a, PACKAGED_PRICES),
        Service(f"nl2sql-b-{tag}", run_b, prices_b),
    )


def _by_job(stack: Stack, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(r["metric"].get(k, "") for k in ("job", *labels)): float(r["value"][1])
        for r in stack.query(expr)
    }


# -- Jaeger -----------------------------------------------------------------------------------------
def test_each_service_has_its_own_traces_in_jaeger(stack: Stack, two: TwoServices) -> None:
    for svc, other in ((two.a, two.b), (two.b, two.a)):
        mine = set(svc.run.summary["trace_ids"])

        def found(s: Service = svc, want: set[str] = mine) -> set[str] | None:
            got = {t["traceID"] for t in stack.traces(s.name, limit=500, lookback="1h")}
            return got if want <= got else None

        got = wait_until(found, timeout=120, interval=2, what=f"{len(mine)} traces of {svc.name}")
        assert not got & set(other.run.summary["trace_ids"]), f"{other.name}'s traces listed under {svc.name}"
    assert {two.a.name, two.b.name} <= set(stack.services())


# -- recording rules and the alert condition --------------------------------------------------------
def test_validation_failure_ratio_is_per_service_and_only_the_bad_one_alerts(
    stack: Stack, two: TwoServices
) -> None:
    v = two.b.run.summary["validations"]
    truth_b = int(v["failed"]) / (int(v["passed"]) + int(v["failed"]))
    assert two.a.run.summary["validations"]["failed"] == 0
    assert truth_b > 0.2, v
    expr, threshold = _alert("validation")
    sel = f'{expr}{{deployment_environment_name="{two.environment}"}}'
    counts_expr = (
        "sum by (job, nl2sql_validation_outcome) "
        f'(nl2sql_sql_validations_total{{deployment_environment_name="{two.environment}"}})'
    )
    expected_counts = {
        (svc.name, outcome): int(n)
        for svc in (two.a, two.b)
        for outcome, n in svc.run.summary["validations"].items()
        if int(n)
    }
    wait_until(
        lambda: (
            {k: round(x) for k, x in _by_job(stack, counts_expr, "nl2sql_validation_outcome").items()}
            == expected_counts
        ),
        timeout=90,
        what=f"validation counts per service {expected_counts}",
    )
    # only an evaluation of the rule made after every sample had arrived holds the whole run
    counted_at = time.time()
    fresh = f"{sel} and timestamp({sel}) > {counted_at:.3f}"

    def both() -> dict[tuple[str, ...], float] | None:
        got = _by_job(stack, fresh)
        return got if {(two.a.name,), (two.b.name,)} <= set(got) else None

    got = wait_until(both, timeout=150, interval=2, what=f"failure ratio for both services ({sel})")
    assert len(got) == 2, got
    a, b = got[(two.a.name,)], got[(two.b.name,)]
    FIGURES.put("failure ratio per service (A, B; B's truth)", f"{a:.3f}, {b:.3f}; {truth_b:.3f}")
    assert a == 0.0, "service A never failed: merged with B it would not be 0"
    assert b == pytest.approx(truth_b, rel=0.25)
    assert not a > threshold
    assert b > threshold


def test_node_p95_has_one_series_per_service_for_the_same_node(stack: Stack, two: TwoServices) -> None:
    sel = f'nl2sql:node_duration_seconds:p95_5m{{deployment_environment_name="{two.environment}"}}'

    def both() -> dict[tuple[str, ...], float] | None:
        got = _by_job(stack, sel, "nl2sql_node_name")
        need = {(two.a.name, "generate_sql"), (two.b.name, "generate_sql")}
        return got if need <= set(got) else None

    got = wait_until(both, timeout=150, interval=2, what="p95 per service for generate_sql")
    assert {job for job, _ in got} == {two.a.name, two.b.name}


def test_tokens_per_service_and_tenant_equal_each_demos_totals(stack: Stack, two: TwoServices) -> None:
    expected = {
        (svc.name, tenant, kind): int(t[kind])
        for svc in (two.a, two.b)
        for tenant, t in svc.run.summary["tokens_by_tenant"].items()
        for kind in ("input", "output")
    }
    expr = (
        "sum by (job, tenant_id, gen_ai_token_type) "
        f'(nl2sql_llm_tokens_total{{deployment_environment_name="{two.environment}"}})'
    )

    def observed() -> dict[tuple[str, ...], int]:
        return {k: round(v) for k, v in _by_job(stack, expr, "tenant_id", "gen_ai_token_type").items()}

    got = wait_until(lambda: (o := observed()) == expected and o, timeout=90, what="tokens per service")
    assert got == expected


# -- Jaeger SPM ---------------------------------------------------------------------------------------
def _spm(stack: Stack, kind: str, service: str) -> dict[str, float]:
    body = stack.get_json(
        f"{stack.jaeger}/api/metrics/{kind}",
        service=service,
        groupByOperation="true",
        spanKind="internal",
        endTs=int(time.time() * 1000),
        lookback=900_000,
        step=15_000,
        ratePer=60_000,
    )
    out: dict[str, float] = {}
    for m in body.get("metrics") or []:
        labels = {lbl["name"]: lbl["value"] for lbl in m.get("labels") or []}
        values = [
            float((p.get("gaugeValue") or {}).get("doubleValue", 0.0)) for p in m.get("metricPoints") or []
        ]
        values = [x for x in values if x == x]  # NaN: no data in that step
        out[labels.get("operation", "")] = max(values, default=0.0)
    return out


def test_jaeger_spm_keeps_the_services_apart(stack: Stack, two: TwoServices) -> None:
    node = "node validate_sql"

    def calls(s: Service) -> dict[str, float] | None:
        got = _spm(stack, "calls", s.name)
        return got if got.get(node) else None

    for svc in (two.a, two.b):
        wait_until(lambda s=svc: calls(s), timeout=150, interval=3, what=f"SPM calls of {svc.name}")
    errors_b = wait_until(
        lambda: (e := _spm(stack, "errors", two.b.name)).get(node) and e,
        timeout=120,
        interval=3,
        what=f"SPM errors of {two.b.name}",
    )
    errors_a = _spm(stack, "errors", two.a.name)
    assert errors_b[node] > 0
    assert errors_a.get(node, 0.0) == 0.0, f"service A never failed validation, SPM says {errors_a}"


# -- cost per tenant --------------------------------------------------------------------------------
def test_cost_per_tenant_equals_each_demos_own_total(stack: Stack, two: TwoServices) -> None:
    """The demo's token totals per tenant x the price table it used (the packaged file for A, its own
    file for B) == nl2sql_llm_cost_total per service and tenant in Prometheus."""
    expected: dict[tuple[str, ...], float] = {}
    for svc in (two.a, two.b):
        price_in, price_out = svc.model_price()
        for tenant, t in svc.run.summary["tokens_by_tenant"].items():
            expected[(svc.name, tenant)] = (int(t["input"]) * price_in + int(t["output"]) * price_out) / 1e6
    assert two.a.model_price() != two.b.model_price()
    expr = (
        f'sum by (job, tenant_id) (nl2sql_llm_cost_total{{deployment_environment_name="{two.environment}"}})'
    )

    seen: list[dict[tuple[str, ...], float]] = []

    def matches() -> dict[tuple[str, ...], float] | None:
        got = _by_job(stack, expr, "tenant_id")
        seen.append(got)
        if set(got) != set(expected):
            return None
        return got if all(got[k] == pytest.approx(v, rel=1e-9) for k, v in expected.items()) else None

    try:
        got = wait_until(matches, timeout=90, what="cost per service and tenant == the demos' totals")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nexpected {expected}\nlast seen {seen[-1:]}") from None
    FIGURES.put(
        "cost per tenant: Prometheus vs demo totals",
        ", ".join(
            f"{job[-10:]}/{tenant} {got[(job, tenant)]:.6f}={v:.6f} USD"
            for (job, tenant), v in expected.items()
        ),
    )
    # nothing unpriced: the demo's model has a price in both tables
    assert not stack.query(
        f'nl2sql_llm_unpriced_tokens_total{{deployment_environment_name="{two.environment}"}}'
    )
    # and the per-tenant recording rule has one series per service and tenant
    rule = f'nl2sql:llm_cost_usd_by_tenant:rate5m{{deployment_environment_name="{two.environment}"}}'

    def rule_series() -> dict[tuple[str, ...], float] | None:
        got = _by_job(stack, rule, "tenant_id")
        return got if set(got) == set(expected) else None

    per_rule = wait_until(
        rule_series,
        timeout=120,
        interval=2,
        what="the cost recording rule per service and tenant",
    )
    assert all(v > 0 for v in per_rule.values()), per_rule


def _alert(uid_part: str) -> tuple[str, float]:
    doc = yaml.safe_load(ALERT_RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if uid_part in rule["uid"]:
                expr = next(d["model"]["expr"] for d in rule["data"] if d["datasourceUid"] != "__expr__")
                model: dict[str, Any] = next(
                    d["model"] for d in rule["data"] if d["model"].get("type") == "threshold"
                )
                ev = model["conditions"][0]["evaluator"]
                assert ev["type"] == "gt"
                return expr.strip(), float(ev["params"][0])
    raise AssertionError(f"no alert rule with uid containing {uid_part}")
