"""A LangGraph app that imports nothing of this package (tests/unit/apps/sql_agent_app.py), started
under `opentelemetry-instrument` against the real stack: its workflow, node and chat spans are in
Jaeger with the right parents and tenants; its node latency, tokens per tenant and validation counts
are in Prometheus. The run has a service name of its own, so only its data is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from stackkit import ROOT, Stack, parent_id, span_tag, wait_until

APP = ROOT / "tests" / "unit" / "apps" / "sql_agent_app.py"
REQUESTS = 6


def _run_app(stack: Stack, workdir: Path, service: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    env.update(
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=stack.otlp_grpc,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        OBSERVABILITY_AUDIT_PATH=str(workdir / "audit" / "events.log"),
        XDG_DATA_HOME=str(workdir / "xdg"),
        NO_PROXY="*",
    )
    summary = workdir / "summary.json"
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    args = [
        str(launcher),
        sys.executable,
        str(APP),
        "--requests",
        str(REQUESTS),
        "--summary-json",
        str(summary),
    ]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(summary.read_text())


def test_unmodified_langgraph_app_reaches_jaeger_and_prometheus(stack: Stack, workdir: Path) -> None:
    service = f"zero-code-{uuid.uuid4().hex[:8]}"
    summary = _run_app(stack, workdir, service)

    def workflow_traces() -> list[dict]:
        # the app's set-up queries (CREATE, INSERT) run outside any request: traces of their own
        found = stack.traces(service, operation="invoke_workflow nl2sql")
        return found if len(found) == REQUESTS else []

    traces = wait_until(workflow_traces, timeout=60, what=f"{REQUESTS} request traces of {service} in Jaeger")
    sessions = set()
    for trace in traces:
        spans = {s["spanID"]: s for s in trace["spans"]}
        roots = [s for s in spans.values() if s["operationName"] == "invoke_workflow nl2sql"]
        assert len(roots) == 1
        root = roots[0]
        tenant = span_tag(root, "tenant.id")
        assert tenant in ("acme", "globex")
        sessions.add(span_tag(root, "session.id"))
        nodes = [s for s in spans.values() if s["operationName"].startswith("node ")]
        assert {s["operationName"] for s in nodes} >= {
            "node list_tables",
            "node get_schema",
            "node run_query",
        }
        for node in nodes:
            assert parent_id(node) == root["spanID"]
            assert span_tag(node, "tenant.id") == tenant
        chats = [s for s in spans.values() if s["operationName"] == "chat gpt-4o-mini"]
        assert chats
        for chat in chats:
            parent = spans[parent_id(chat)]
            assert parent["operationName"] == f"node {span_tag(chat, 'nl2sql.node.name')}"
    assert sessions == {f"req-{i}" for i in range(REQUESTS)}

    job = f'job="{service}"'
    tokens = wait_until(
        lambda: (
            (r := stack.query(f"sum by (tenant_id) (nl2sql_llm_tokens_total{{{job}}})"))
            and {x["metric"]["tenant_id"]: round(float(x["value"][1])) for x in r} == summary["tokens"]
            and r
        ),
        timeout=60,
        what="tokens per tenant in Prometheus equal to the app's own count",
    )
    assert tokens
    p95 = wait_until(
        lambda: stack.query(
            "histogram_quantile(0.95, sum by (nl2sql_node_name) "
            f"(rate(nl2sql_node_duration_seconds{{{job}}}[5m])))"
        ),
        timeout=60,
        what="p95 node latency",
    )
    assert {x["metric"]["nl2sql_node_name"] for x in p95} >= {"list_tables", "generate_query", "run_query"}
    assert all(float(x["value"][1]) >= 0 for x in p95 if x["value"][1] != "NaN")
    validations = wait_until(
        lambda: (
            (r := stack.query(f"sum by (nl2sql_validation_outcome) (nl2sql_sql_validations_total{{{job}}})"))
            and Counter({x["metric"]["nl2sql_validation_outcome"]: round(float(x["value"][1])) for x in r})
            == Counter(summary["validations"])
            and r
        ),
        timeout=60,
        what="validation counts equal to the app's own",
    )
    assert validations
    node_counts = stack.query(
        f"histogram_count(sum by (nl2sql_node_name, tenant_id) (nl2sql_node_duration_seconds{{{job}}}))"
    )
    assert {(x["metric"]["nl2sql_node_name"], x["metric"]["tenant_id"]) for x in node_counts} >= {
        ("run_query", "acme"),
        ("run_query", "globex"),
    }
