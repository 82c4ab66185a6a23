"""The log store with the real binaries: VictoriaLogs runs with the flags compose gives it, and the
real collector's logs pipeline delivers an OTLP log record to it with what Grafana and the trace
links search for (trace and span id, severity, logger, service, tenant, node), secrets masked."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import _free_port
from .test_collector import BASE, _local_override
from .test_compose import COMPOSE, render


def _get(url: str, data: dict[str, str] | None = None, timeout: float = 5) -> str:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=timeout) as resp:
        return str(resp.read().decode())


def _until(probe: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what}: the process exited {proc.returncode}: {proc.communicate()[1][-3000:]}")
        try:
            value = probe()
            if value:
                return value
            last = value
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


@pytest.fixture
def victorialogs(tool: Callable[[str], Path], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The real victoria-logs, started with compose's command (data path and address made local)."""
    command = render(COMPOSE)["services"]["victorialogs"]["command"]
    port = _free_port()
    local = {"-storageDataPath": str(tmp_path / "vl-data"), "-httpListenAddr": f"127.0.0.1:{port}"}
    args = [f"{flag}={local[flag]}" if flag in local else a for a in command for flag in [a.split("=", 1)[0]]]
    proc = subprocess.Popen(
        [str(tool("victoria-logs")), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _get(f"{base}/health") == "OK", 30, "VictoriaLogs /health", proc)
        yield base, proc
    finally:
        _stop(proc)


def test_victorialogs_runs_with_the_compose_flags(victorialogs: tuple[str, subprocess.Popen[str]]) -> None:
    base, _ = victorialogs
    retention = next(
        a for a in render(COMPOSE)["services"]["victorialogs"]["command"] if "-retentionPeriod" in a
    )
    flags = _get(f"{base}/flags")
    assert retention.lstrip("-").replace("=", '="') + '"' in flags, flags[:2000]


def _otlp_log(service: str, trace_id: str, span_id: str, run: str) -> dict[str, Any]:
    def attr(key: str, value: str) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [attr("service.name", service), attr("deployment.environment.name", run)]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "nl2sql_observability.demo"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(time.time_ns()),
                                "severityNumber": 13,
                                "severityText": "WARN",
                                "traceId": trace_id,
                                "spanId": span_id,
                                "body": {"stringValue": "sql validation failed"},
                                "attributes": [
                                    attr("tenant_id", "acme"),
                                    attr("node", "validate_sql"),
                                    attr("error_type", "unknown_column"),
                                    attr("api_key", "not-a-pattern-but-a-secret-key-name"),
                                    attr("note", "call with Bearer abcdefghijklmnopqrstuvwxyz0123"),
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }


@pytest.mark.timeout(120)
def test_collector_delivers_log_records_to_victorialogs(
    tool: Callable[[str], Path], tmp_path: Path, victorialogs: tuple[str, subprocess.Popen[str]]
) -> None:
    base, _ = victorialogs
    override, ports = _local_override(tmp_path)
    extra = yaml.safe_load(override.read_text(encoding="utf-8"))
    extra["exporters"]["otlp_http/victorialogs"] = {"logs_endpoint": f"{base}/insert/opentelemetry/v1/logs"}
    override.write_text(yaml.safe_dump(extra), encoding="utf-8")
    run = f"stack-check-{uuid.uuid4().hex[:8]}"
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    proc = subprocess.Popen(
        [str(tool("otelcol-nl2sql")), f"--config={BASE}", f"--config={override}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        payload = json.dumps(_otlp_log("nl2sql", trace_id, span_id, run)).encode()

        def send() -> bool:
            req = urllib.request.Request(
                f"http://127.0.0.1:{ports['http']}/v1/logs",
                data=payload,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status == 200

        _until(send, 30, "the collector to accept OTLP logs", proc)
        query = {"query": f'trace_id:"{trace_id}"', "start": "1h"}
        text = _until(
            lambda: _get(f"{base}/select/logsql/query", query), 30, "the record in VictoriaLogs", proc
        )
    finally:
        err = _stop(proc)
    (record,) = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert record["_msg"] == "sql validation failed"
    assert (record["trace_id"], record["span_id"]) == (trace_id, span_id)
    assert (record["severity_text"], record["severity_number"]) == ("WARN", "13")
    assert record["scope.name"] == "nl2sql_observability.demo"
    assert (record["tenant_id"], record["node"]) == ("acme", "validate_sql")
    # the stream is the service and its environment, never a per-record value
    assert record["_stream"] == f'{{deployment.environment.name="{run}",service.name="nl2sql"}}'
    assert "not-a-pattern-but-a-secret-key-name" not in text, "a secret-named attribute reached the log store"
    assert "abcdefghijklmnopqrstuvwxyz0123" not in text, "a bearer token reached the log store"
    assert "otlp_http/victorialogs" not in err or "Exporting failed" not in err, err[-3000:]
