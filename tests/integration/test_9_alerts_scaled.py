"""Every alert Prometheus evaluates, fired by the real Prometheus and delivered by the real Alertmanager.

The rules are the product's, generated from slo/nl2sql.yml by scripts/slo_rules.py with every window,
duration and interval divided by 60 (`--time-scale 60`: a 5m window is 5s, Sloth's 30-day period
12h), and replace the product's generated rules in this stack. Synthetic OTLP metrics, pushed to the
stack's collector every second, make each condition true: failed and slow questions, negative
feedback, an expensive tenant, a service that stops sending, a collector losing telemetry, a sampler
losing traces, an agent failing to reach its samplers. The test waits, polling, until the webhook
has received every alert name the generated Prometheus rules define.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from stackkit import COMPOSE_FILE, COMPOSE_OVERRIDES, FIGURES, ROOT, Stack, wait_until
from webhook import Receiver, webhook_receiver

SCALE = 60
SERVICE = "nl2sql-e2e"  # sends until the end
GONE = "nl2sql-e2e-gone"  # sends long enough to be established, then stops
COLLECTOR = "otelcol-e2e"  # a collector's own counters, as gauges (OTLP adds no suffix to those)


def _scaled_rules(tmp: Path) -> tuple[Path, set[str]]:
    """A compose override whose Prometheus loads the hand-written recording rules plus the scaled
    generated ones, and the alert names those define."""
    gen = tmp / "generated"
    proc = subprocess.run(
        [sys.executable, ROOT / "scripts" / "slo_rules.py", "--time-scale", str(SCALE), "--out", gen],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = tmp / "rules"
    rules.mkdir()
    for f in (ROOT / "prometheus" / "rules").glob("*.yml"):
        if not f.name.startswith("slo-"):
            shutil.copy(f, rules / f.name)
    alerts: set[str] = set()
    for f in (gen / "prometheus" / "rules").glob("slo-*.yml"):
        shutil.copy(f, rules / f.name)
        alerts |= {
            r["alert"] for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"] if "alert" in r
        }
    rules.chmod(0o755)  # Prometheus runs as nobody
    for f in rules.iterdir():
        f.chmod(0o644)
    override = tmp / "compose.scaled-rules.yml"
    override.write_text(
        f"services:\n  prometheus:\n    volumes:\n      - {rules}:/etc/prometheus/rules:ro\n",
        encoding="utf-8",
    )
    return override, alerts


def _attrs(**kv: str) -> list[dict[str, Any]]:
    return [{"key": k.replace("__", "."), "value": {"stringValue": v}} for k, v in kv.items()]


def _sum(
    name: str, unit: str, points: list[tuple[dict[str, str], float]], start: int, now: int
) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "sum": {
            "aggregationTemporality": 2,
            "isMonotonic": True,
            "dataPoints": [
                {
                    "attributes": _attrs(**a),
                    "startTimeUnixNano": str(start),
                    "timeUnixNano": str(now),
                    "asDouble": v,
                }
                for a, v in points
            ],
        },
    }


def _gauge(name: str, points: list[tuple[dict[str, str], float]], now: int) -> dict[str, Any]:
    return {
        "name": name,
        "gauge": {
            "dataPoints": [
                {"attributes": _attrs(**a), "timeUnixNano": str(now), "asDouble": v} for a, v in points
            ]
        },
    }


def _slow_requests(count: int, start: int, now: int) -> dict[str, Any]:
    """nl2sql.request.duration as an exponential histogram: every request in (16 s, 32 s] (scale 0)."""
    return {
        "name": "nl2sql.request.duration",
        "unit": "s",
        "exponentialHistogram": {
            "aggregationTemporality": 2,
            "dataPoints": [
                {
                    "attributes": _attrs(tenant__id="acme"),
                    "startTimeUnixNano": str(start),
                    "timeUnixNano": str(now),
                    "count": str(count),
                    "sum": 20.0 * count,
                    "scale": 0,
                    "zeroCount": "0",
                    "positive": {"offset": 4, "bucketCounts": [str(count)]},
                }
            ],
        },
    }


def _resource(service: str, environment: str, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resource": {"attributes": _attrs(service__name=service, deployment__environment__name=environment)},
        "scopeMetrics": [{"scope": {"name": "test_9_alerts_scaled"}, "metrics": metrics}],
    }


def _payload(t: int, start: int, now: int, environment: str, gone_until: int) -> dict[str, Any]:
    """Cumulative values after `t` seconds of pushing."""
    service = [
        # half the questions fail (availability page, answered-ratio ticket), all of them slow (latency)
        _sum(
            "nl2sql.requests",
            "{request}",
            [
                ({"tenant__id": "acme", "nl2sql__outcome": "answered"}, 10.0 * t),
                ({"tenant__id": "acme", "nl2sql__outcome": "sql_error"}, 10.0 * t),
            ],
            start,
            now,
        ),
        _slow_requests(20 * t, start, now),
        # half the feedback negative (> 30 %)
        _sum(
            "nl2sql.evaluations",
            "{evaluation}",
            [
                (
                    {"gen_ai__evaluation__name": "user_feedback", "nl2sql__evaluation__negative": "true"},
                    1.0 * t,
                ),
                (
                    {"gen_ai__evaluation__name": "user_feedback", "nl2sql__evaluation__negative": "false"},
                    1.0 * t,
                ),
            ],
            start,
            now,
        ),
        # 1 USD a second: 3600 USD/hour, over the 50 USD/hour budget
        _sum("nl2sql.llm.cost", "{USD}", [({"tenant__id": "acme"}, 1.0 * t)], start, now),
        _sum("nl2sql.llm.tokens", "{token}", [({"tenant__id": "acme"}, 100.0 * t)], start, now),
    ]
    collector = [
        _gauge("otelcol_receiver_refused_spans", [({"receiver": "otlp"}, 5.0 * t)], now),
        _gauge("otelcol_processor_tail_sampling_sampling_trace_dropped_too_early", [({}, 5.0 * t)], now),
        _gauge(
            "otelcol_loadbalancer_backend_outcome",
            [({"success": "true"}, 90.0 * t), ({"success": "false"}, 10.0 * t)],
            now,
        ),
    ]
    out = [_resource(SERVICE, environment, service), _resource(COLLECTOR, environment, collector)]
    if t <= gone_until:
        out.append(_resource(GONE, environment, [_slow_requests(t, start, now)]))
    return {"resourceMetrics": out}


class Pusher:
    """Pushes the synthetic metrics once a second from a thread until stopped."""

    def __init__(self, stack: Stack, environment: str, gone_until: int) -> None:
        self.url = f"{stack.otlp_http}/v1/metrics"
        self.environment = environment
        self.gone_until = gone_until
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._session = requests.Session()
        self._session.trust_env = False

    def __enter__(self) -> Pusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        start = time.time_ns()
        t = 0
        while not self._stop.is_set():
            t += 1
            body = _payload(t, start, time.time_ns(), self.environment, self.gone_until)
            try:
                resp = self._session.post(self.url, json=body, timeout=5)
                if resp.status_code != 200:
                    self.errors.append(f"{resp.status_code} {resp.text[:200]}")
            except requests.RequestException as exc:
                self.errors.append(str(exc))
            self._stop.wait(1)


@pytest.fixture(scope="module")
def scaled(stack_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, set[str]]]:
    override, alerts = _scaled_rules(tmp_path_factory.mktemp("scaled-rules"))
    with stack_factory(files=[COMPOSE_FILE, *COMPOSE_OVERRIDES, override], label="scaled-rules stack") as s:
        yield s, alerts


def test_every_prometheus_alert_fires_and_is_delivered(scaled: tuple[Stack, set[str]]) -> None:
    stack, expected = scaled
    assert len(expected) >= 9, expected
    environment = "e2e-scaled"
    t0 = time.monotonic()
    receiver: Receiver
    with webhook_receiver(stack) as receiver, Pusher(stack, environment, gone_until=45) as pusher:

        def missing() -> set[str]:
            delivered = {a["labels"]["alertname"] for a in receiver.alerts() if a["status"] == "firing"}
            return expected - delivered

        try:
            wait_until(lambda: not missing(), timeout=300, interval=2, what="every alert delivered")
        except AssertionError:
            firing = stack.query('ALERTS{alertstate="firing"}')
            raise AssertionError(
                f"not delivered: {sorted(missing())}; firing in Prometheus: "
                f"{sorted({a['metric']['alertname'] for a in firing})}; push errors: {pusher.errors[:3]}"
            ) from None
        assert not pusher.errors, pusher.errors[:3]
    FIGURES.put("scaled rules: every Prometheus alert delivered", f"{time.monotonic() - t0:.0f}s")
    by_name = {a["labels"]["alertname"]: a for a in receiver.alerts() if a["status"] == "firing"}
    # each names its service (or, for the pipeline's, its component) and its environment
    for name in expected:
        labels = by_name[name]["labels"]
        if labels.get("component") == "telemetry-pipeline":
            continue
        assert labels["deployment_environment_name"] == environment, labels
        assert labels["job"] in (SERVICE, GONE), labels
    assert by_name["NL2SQLServiceSilent"]["labels"]["job"] == GONE
    # the page, not only the ticket (which the page inhibits)
    assert receiver.alerts(alertname="NL2SQLAvailabilityBudgetBurn", severity="page")
