"""The demo's "where to look": only services that answer, and links that open what they promise
(the JSON API, said so, where a local build has no web UI)."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nl2sql_observability.demo import run as demo_run
from nl2sql_observability.demo.links import JAEGER_PLACEHOLDER, StackUrls, where_to_look

TRACE = "ab" * 16


@contextmanager
def _server(pages: dict[str, tuple[int, str]]) -> Iterator[str]:
    """An HTTP server answering `pages` (path -> status, body); 404 for the rest."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = pages.get(self.path, (404, "not found"))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _closed() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _lines(urls: StackUrls) -> list[str]:
    return where_to_look(
        urls, TRACE, service="nl2sql-demo", environment="local", audit_path=Path("/tmp/a/events.log")
    )


def test_local_builds_without_ui_get_their_api_and_say_why() -> None:
    jaeger_pages = {"/": (200, f"<h1>This is {JAEGER_PLACEHOLDER} you are looking for!</h1>")}
    prom_pages = {"/-/ready": (200, "ready"), "/query": (500, "no such file")}
    logs_pages = {"/health": (200, "OK")}
    with _server(jaeger_pages) as jaeger, _server(prom_pages) as prom, _server(logs_pages) as logs:
        lines = _lines(StackUrls(jaeger=jaeger, prometheus=prom, logs=logs, grafana=_closed()))
    text = "\n".join(lines)
    assert f"{jaeger}/api/traces/{TRACE}" in text
    assert "/trace/" not in text
    assert "no web UI" in text
    assert f"{logs}/select/logsql/query?query=trace_id:{TRACE}" in text
    (cost,) = [line for line in lines if line.startswith("cost")]
    url = cost.split()[1]
    assert url.startswith(f"{prom}/api/v1/query?query=")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["query"][0]
    assert query == (
        'sum by (tenant_id) (nl2sql_llm_cost_total{job="nl2sql-demo",deployment_environment_name="local"})'
    )
    assert "without its web UI" in cost
    assert not any(line.startswith("dashboards") for line in lines)  # Grafana does not answer
    assert lines[-1] == f"prompts     nl2sql-obs audit show --trace-id {TRACE} --path /tmp/a/events.log"


def test_real_uis_get_their_pages_and_the_monitor_tab_note() -> None:
    prom_pages = {"/-/ready": (200, "ready"), "/query": (200, "<html>")}
    logs_pages = {"/health": (200, "OK"), "/select/vmui/": (200, "<html>")}
    with (
        _server({"/": (200, "<html>Jaeger UI</html>")}) as jaeger,
        _server(prom_pages) as prom,
        _server(logs_pages) as logs,
        _server({"/api/health": (200, "{}")}) as grafana,
    ):
        lines = _lines(StackUrls(jaeger=jaeger, prometheus=prom, logs=logs, grafana=grafana))
    text = "\n".join(lines)
    assert f"{jaeger}/trace/{TRACE}" in text
    assert f"{jaeger}/monitor" in text
    assert "Internal or Client" in text
    assert f"{logs}/select/vmui/#/?query=trace_id:{TRACE}" in text
    assert f"{prom}/query?g0.expr=" in text
    assert f"{grafana}/d/nl2sql-overview" in text


def test_summary_shows_cost_per_tenant_and_says_when_no_stack_answers() -> None:
    closed = _closed()
    summary = {
        "service": "nl2sql-demo",
        "environment": "local",
        "audit_path": None,
        "requests": 3,
        "requests_by_tenant": {"acme": 2, "globex": 1},
        "elapsed_s": 0.1,
        "validations": {"passed": 3, "failed": 0},
        "failures": {},
        "node_latency_ms": {},
        "tokens_by_tenant": {"acme": {"input": 10, "output": 5}, "globex": {"input": 4, "output": 2}},
        "cost_usd_by_tenant": {"acme": 0.00003},
        "unpriced_tokens_by_model": {"mystery-1": 6},
        "trace_ids": [TRACE],
        "failed_trace_ids": [],
    }
    text = demo_run.format_summary(summary, StackUrls(closed, closed, closed, closed))
    assert "acme                  2             10               5     0.000030" in text
    assert "globex                1              4               2     unpriced" in text
    assert "model mystery-1 has no price: 6 tokens without cost" in text
    assert "no stack answers (start it: make up)" in text
    assert "prompts" not in text  # the audit log is off in this run
