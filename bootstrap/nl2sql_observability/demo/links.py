"""Where to look after a demo run: links into the local stack that open what they promise.

Each service is asked first (0.5 s, never through a proxy); only services that answer are listed.
Images built from the backends' Go modules (`make images` on a machine without a registry) carry no
web UI: Jaeger's module serves a placeholder page (its UI is a separate npm build), and Prometheus'
UI routes answer 500. For those the link is the JSON API that works, and the line says why.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StackUrls", "where_to_look"]

# The page a Jaeger built from its Go module serves instead of the UI.
JAEGER_PLACEHOLDER = "not the Jaeger UI"
DASHBOARD_UID = "nl2sql-overview"


@dataclass(frozen=True)
class StackUrls:
    """The stack's base URLs (`make up` publishes these ports on 127.0.0.1 by default; the demo's
    `--jaeger-url` … options and `make demo` override them)."""

    jaeger: str = "http://127.0.0.1:16686"
    prometheus: str = "http://127.0.0.1:9090"
    logs: str = "http://127.0.0.1:9428"
    grafana: str = "http://127.0.0.1:3000"


def _get(url: str) -> tuple[int, str]:
    """(HTTP status, the start of the body); (0, "") when nothing answers. Never raises."""
    import urllib.error

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=0.5) as resp:
            return int(resp.status), resp.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except Exception:  # down, refused, timed out: not running
        return 0, ""


def _prometheus_query(service: str, environment: str) -> str:
    return (
        "sum by (tenant_id) (nl2sql_llm_cost_total"
        f'{{job="{service}",deployment_environment_name="{environment}"}})'
    )


def where_to_look(
    urls: StackUrls, trace_id: str, *, service: str, environment: str, audit_path: Path | None
) -> list[str]:
    """The lines of "where to look" (without indentation), for the services that answer."""
    lines: list[str] = []
    status, body = _get(f"{urls.jaeger}/")
    if status == 200 and JAEGER_PLACEHOLDER in body:
        lines.append(
            f"trace       {urls.jaeger}/api/traces/{trace_id}   (JSON: this Jaeger is built from its"
            " Go module, which has no web UI)"
        )
    elif status == 200:
        lines.append(f"trace       {urls.jaeger}/trace/{trace_id}")
        lines.append(
            f"monitor     {urls.jaeger}/monitor   (set Span Kind to Internal or Client: our spans"
            " are not Server spans)"
        )
    if _get(f"{urls.logs}/health")[0] == 200:
        query = urllib.parse.quote(f"trace_id:{trace_id}", safe=":")
        if _get(f"{urls.logs}/select/vmui/")[0] == 200:
            lines.append(f"logs        {urls.logs}/select/vmui/#/?query={query}")
        else:
            lines.append(f"logs        {urls.logs}/select/logsql/query?query={query}   (JSON lines)")
    if _get(f"{urls.prometheus}/-/ready")[0] == 200:
        expr = urllib.parse.quote(_prometheus_query(service, environment), safe="")
        if _get(f"{urls.prometheus}/query")[0] == 200:
            lines.append(f"cost        {urls.prometheus}/query?g0.expr={expr}&g0.tab=table")
        else:
            lines.append(
                f"cost        {urls.prometheus}/api/v1/query?query={expr}   (JSON: this Prometheus is"
                " built without its web UI)"
            )
    if _get(f"{urls.grafana}/api/health")[0] == 200:
        lines.append(f"dashboards  {urls.grafana}/d/{DASHBOARD_UID}   (NL2SQL overview, service {service})")
    if audit_path is not None:
        lines.append(f"prompts     nl2sql-obs audit show --trace-id {trace_id} --path {audit_path}")
    return lines
