"""A newcomer's first ten minutes: the real `make demo` against the real stack.

`make demo` runs in its own venv (what a user installs) as the service `nl2sql-demo`. Then:
- the dashboard's time-range totals (the Grafana JSON's own expressions, variables filled) equal the
  demo's summary exactly, for the SDK's default export interval and for a 1 s one;
- the p95-per-node panel is within 10 % of the p95 of the node spans in Jaeger;
- every trace of the run holds only the contract's spans (no other instrumentor's);
- every link of the summary's "where to look" answers 200 with what it promises.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
import urllib.parse
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stackkit import FIGURES, ROOT, Stack, Timeout, span_tag, wait_until

DASHBOARD = ROOT / "grafana" / "dashboards" / "nl2sql-overview.json"
SERVICE = "nl2sql-demo"
NODES = ("lookup_schema", "generate_sql", "validate_sql", "execute_sql", "answer")


@dataclass
class MakeDemo:
    label: str
    environment: str
    started: float
    finished: float
    stdout: str
    summary: dict[str, Any]


def _make_demo(stack: Stack, workdir: Path, *, export_interval_ms: str | None) -> MakeDemo:
    environment = f"nc-{uuid.uuid4().hex[:10]}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    env.update({name: str(port) for name, port in stack.ports.items()})  # the links follow the ports
    env.update(
        OBSERVABILITY_ENVIRONMENT=environment,
        OBSERVABILITY_AUDIT_PATH=str(workdir / "audit" / "events.log"),
        XDG_DATA_HOME=str(workdir / "xdg"),
        NO_PROXY="*",
    )
    if export_interval_ms is not None:
        env["OTEL_METRIC_EXPORT_INTERVAL"] = export_interval_ms
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(proxy, None)
    summary_path = workdir / "summary.json"
    args = f"--requests 30 --seed 11 --time-scale 0.1 --no-progress --summary-json {summary_path}"
    started = time.time()
    proc = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_ARGS={args}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    label = f"export interval {export_interval_ms or 'default'} ms, {time.time() - started:.0f} s"
    return MakeDemo(
        label, environment, started, time.time(), proc.stdout, json.loads(summary_path.read_text())
    )


@pytest.fixture(scope="module", params=[None, "1000"], ids=["default-interval", "1s-interval"])
def run(request: pytest.FixtureRequest, stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> MakeDemo:
    return _make_demo(stack, tmp_path_factory.mktemp("make-demo"), export_interval_ms=request.param)


# -- the dashboard's own expressions -------------------------------------------------------------
def _panel_expr(title: str) -> str:
    board = json.loads(DASHBOARD.read_text())
    (panel,) = [p for p in board["panels"] if p.get("title") == title]
    (target,) = panel["targets"][:1]
    return str(target["expr"])


def _fill(expr: str, run: MakeDemo, at: float) -> str:
    window = f"{math.ceil(at - run.started) + 30}s"  # the whole run, and nothing of the earlier one
    values = {"env": run.environment, "service": SERVICE, "tenant": ".*", "node": ".*", "__range": window}
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("$" + name, value)
    assert "$" not in expr, expr
    return expr


def _panel_values(stack: Stack, run: MakeDemo, title: str, label: str) -> dict[str, float]:
    at = time.time()
    rows = stack.query(_fill(_panel_expr(title), run, at), at)
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in rows}


TOTAL_PANELS = [  # title, label, the summary's numbers
    ("Top tenants by requests (time range)", "tenant_id", lambda s: s["requests_by_tenant"]),
    (
        "Top tenants by tokens (time range)",
        "tenant_id",
        lambda s: {t: v["input"] + v["output"] for t, v in s["tokens_by_tenant"].items()},
    ),
    ("Top tenants by cost (time range)", "tenant_id", lambda s: s["cost_usd_by_tenant"]),
    ("Cost per model (time range)", "gen_ai_request_model", lambda s: s["cost_usd_by_model"]),
    ("Cost per node (time range)", "nl2sql_node_name", lambda s: s["cost_usd_by_node"]),
    (
        "Tokens per node (time range)",
        "nl2sql_node_name",
        lambda s: {n: v["input"] + v["output"] for n, v in s["tokens_by_node"].items()},
    ),
    (  # the demo's model has a price: every model shows 0 unpriced tokens
        "Unpriced tokens by model (time range)",
        "gen_ai_request_model",
        lambda s: {m: s["unpriced_tokens_by_model"].get(m, 0) for m in s["cost_usd_by_model"]},
    ),
]


@pytest.mark.parametrize(("title", "label", "expected"), TOTAL_PANELS, ids=[t[0] for t in TOTAL_PANELS])
def test_dashboard_totals_equal_the_demo_summary(
    stack: Stack, run: MakeDemo, title: str, label: str, expected: Any
) -> None:
    want = {k: float(v) for k, v in expected(run.summary).items()}
    assert want

    seen: list[dict[str, float]] = [{}]

    def same() -> dict[str, float] | None:
        seen[0] = got = _panel_values(stack, run, title, label)
        ok = set(got) == set(want) and all(math.isclose(got[k], want[k], rel_tol=1e-9) for k in want)
        return got if ok else None

    try:
        wait_until(same, timeout=60, interval=2, what=f"{title} == the demo's summary")
    except Timeout:
        raise AssertionError(f"{title}: the dashboard shows {seen[0]}, the demo's summary {want}") from None


def _span_p95(stack: Stack, trace_ids: list[str]) -> dict[str, float]:
    durations: dict[str, list[float]] = defaultdict(list)
    for tid in trace_ids:
        trace = wait_until(lambda t=tid: stack.trace(t), timeout=60, what=f"trace {tid} in Jaeger")
        for span in trace["spans"]:
            node = span_tag(span, "nl2sql.node.name")
            if span["operationName"].startswith("node ") and node:
                durations[node].append(span["duration"] / 1e6)
    # nearest rank: the observation a histogram's p95 bucket must hold
    return {n: sorted(v)[math.ceil(0.95 * len(v)) - 1] for n, v in durations.items()}


def test_p95_per_node_panel_within_10_percent_of_the_spans(stack: Stack, run: MakeDemo) -> None:
    truth = _span_p95(stack, run.summary["trace_ids"])
    assert set(truth) == set(NODES)

    def panel() -> dict[str, float] | None:
        got = _panel_values(stack, run, "p95 per node (time range)", "nl2sql_node_name")
        return got if set(got) == set(truth) else None

    got = wait_until(panel, timeout=60, interval=2, what="the p95-per-node panel for every node")
    off = {n: round(got[n] / truth[n] - 1, 3) for n in truth}
    FIGURES.put(
        f"p95 per node, panel vs spans ({run.label})", ", ".join(f"{n} {x:+.1%}" for n, x in off.items())
    )
    assert all(abs(x) <= 0.10 for x in off.values()), f"panel/spans - 1 per node: {off}; {got} vs {truth}"


def test_traces_hold_only_contract_spans(stack: Stack, run: MakeDemo) -> None:
    allowed = {"invoke_workflow nl2sql", "chat nl2sql-sim-1", *(f"node {n}" for n in NODES)}
    strangers: dict[str, int] = defaultdict(int)
    for tid in run.summary["trace_ids"]:
        trace = wait_until(lambda t=tid: stack.trace(t), timeout=60, what=f"trace {tid} in Jaeger")
        services = {p["serviceName"] for p in trace["processes"].values()}
        assert services == {SERVICE}, services
        for span in trace["spans"]:
            name = span["operationName"]
            if name in allowed or span_tag(span, "db.system.name") or span_tag(span, "db.system"):
                continue
            strangers[name] += 1
    assert not strangers, f"spans outside the contract: {dict(strangers)}"


# -- where to look ---------------------------------------------------------------------------------
def _where_to_look(stdout: str) -> dict[str, str]:
    lines = stdout.split("where to look:", 1)[1].splitlines()
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = line.strip()
    return out


def test_every_printed_link_opens_what_it_promises(stack: Stack, run: MakeDemo) -> None:
    where = _where_to_look(run.stdout)
    sample = (run.summary["failed_trace_ids"] or run.summary["trace_ids"])[0]
    assert {"trace", "logs", "cost", "prompts"} <= set(where), where
    urls = {k: v.split()[1] for k, v in where.items() if re.match(r"https?://", v.split()[1])}
    for key, url in urls.items():
        assert url.startswith("http://127.0.0.1:"), url
        resp = stack.session.get(url, timeout=10)
        assert resp.status_code == 200, (key, url, resp.status_code)
        if key == "trace":
            if "/api/traces/" in url:
                assert "no web UI" in where[key]
                assert resp.json()["data"][0]["traceID"] == sample
            else:
                assert "<html" in resp.text.lower()
                assert "not the Jaeger UI" not in resp.text, f"{url} is Jaeger's placeholder page"
        elif key == "logs":
            if "/select/logsql/query" in url:
                records = [json.loads(x) for x in resp.text.splitlines() if x.strip()]
                assert records
                assert {r["trace_id"] for r in records} == {sample}
            else:
                assert "<html" in resp.text.lower()
        elif key == "cost" and "/api/v1/query" in url:
            assert "without its web UI" in where[key]
            rows = resp.json()["data"]["result"]
            got = {r["metric"]["tenant_id"]: float(r["value"][1]) for r in rows}
            want = run.summary["cost_usd_by_tenant"]
            assert set(got) == set(want)
            assert all(math.isclose(got[t], want[t], rel_tol=1e-9) for t in want), (got, want)
        elif key == "cost":
            assert "<html" in resp.text.lower()
            assert urllib.parse.urlsplit(url).query.startswith("g0.expr=")
    # the audit command, run as printed, finds the sample trace's prompts
    cmd = where["prompts"].split()[1:]  # after the "prompts" key
    assert cmd[:4] == ["nl2sql-obs", "audit", "show", "--trace-id"]
    proc = subprocess.run(
        [str(ROOT / ".venv-demo" / "bin" / "nl2sql-obs"), *cmd[1:]],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "OBSERVABILITY_EXPORTER": "none"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sample in proc.stdout
