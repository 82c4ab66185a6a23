"""The scale-out profile: both collector tiers validate and the sampler's policies decide as documented,
on the real collector; the compose overlay and Prometheus' sampler scrape job agree."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, _free_port, assert_ok, load_yaml, run
from .promql_sources import SCALE_OUT_METRICS
from .test_collector import AGENT, BASE, SAMPLER, gomodcache, module_dir
from .test_compose import COMPOSE, ENV_FILE, SCALE, compose_cli, render

SCRAPE = ROOT / "prometheus" / "scrape.d" / "samplers.yml"
GATE = "--feature-gates=processor.tailsamplingprocessor.recordpolicy"
SAMPLING_ENV = {
    "NL2SQL_SAMPLING_PERCENT": "25",
    "NL2SQL_SAMPLING_LATENCY_MS": "2000",
    "NL2SQL_SAMPLING_WATCH_TENANTS": "[acme, globex]",
    "NL2SQL_SAMPLING_DECISION_WAIT": "3s",
    "NL2SQL_SAMPLING_NUM_TRACES": "1000",
}


def test_agent_validates_on_top_of_the_base_config(tool: Callable[[str], Path]) -> None:
    assert_ok(run([tool("otelcol-nl2sql"), "validate", f"--config={BASE}", f"--config={AGENT}"]))


@pytest.mark.parametrize("env", [{}, SAMPLING_ENV], ids=["defaults", "settings"])
def test_sampler_validates_with_the_recordpolicy_gate(
    tool: Callable[[str], Path], env: dict[str, str]
) -> None:
    assert_ok(run([tool("otelcol-nl2sql"), "validate", f"--config={SAMPLER}", GATE], env=env))


CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"


def test_scale_out_metric_names_are_the_components_own() -> None:
    """The names the rules, alerts and dashboard row read, against the two components' metadata.yaml
    (prefixed otelcol_; histograms as _bucket/_count/_sum, as Prometheus scrapes them)."""
    declared: set[str] = set()
    for module in ("processor/tailsamplingprocessor", "exporter/loadbalancingexporter"):
        meta = load_yaml(module_dir(gomodcache(), f"{CONTRIB}/{module}", "v0.159.0") / "metadata.yaml")
        for name, spec in meta["telemetry"]["metrics"].items():
            suffixes = ("_bucket", "_count", "_sum") if "histogram" in spec else ("",)
            declared |= {f"otelcol_{name}{s}" for s in suffixes}
    assert not SCALE_OUT_METRICS - declared, sorted(SCALE_OUT_METRICS - declared)


def test_agent_sends_traces_to_the_samplers_and_keeps_the_rest() -> None:
    agent = load_yaml(AGENT)
    base = load_yaml(BASE)
    pipes = agent["service"]["pipelines"]
    assert set(pipes) == {"traces"}, "the agent changes only where traces go"
    assert pipes["traces"]["exporters"] == ["load_balancing/samplers", "span_metrics"]
    assert "span_metrics" in base["service"]["pipelines"]["metrics"]["receivers"], "RED before sampling"
    lb = agent["exporters"]["load_balancing/samplers"]
    assert lb["routing_key"] == "traceID"
    assert "dns" in lb["resolver"]


def test_sampler_holds_only_traces() -> None:
    cfg = load_yaml(SAMPLER)
    assert set(cfg["service"]["pipelines"]) == {"traces"}, "logs and metrics are never sampled"
    ts = cfg["processors"]["tail_sampling"]
    assert ts["decision_cache"]["sampled_cache_size"] > 0
    assert ts["decision_cache"]["non_sampled_cache_size"] > 0
    assert ts["maximum_trace_size_bytes"] > 0


def _span(
    trace_id: str, name: str, attrs: dict[str, str], *, error: bool = False, ms: int = 50
) -> dict[str, Any]:
    start = time.time_ns() - 10_000_000_000
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": trace_id[:16],
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + ms * 1_000_000),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
    }
    if error:
        span["status"] = {"code": 2}
    return span


# trace id → (span, the policy that must keep it, or None: dropped)
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    tid: case
    for tid, case in {
        "a1" * 16: (_span("a1" * 16, "node execute_sql", {"tenant.id": "zeta"}, error=True), "errors"),
        "a2" * 16: (
            _span("a2" * 16, "invoke_workflow nl2sql", {"nl2sql.outcome": "sql_error"}),
            "not-answered",
        ),
        "a3" * 16: (_span("a3" * 16, "invoke_workflow nl2sql", {"nl2sql.outcome": "answered"}), None),
        "a4" * 16: (_span("a4" * 16, "invoke_workflow nl2sql", {"tenant.id": "zeta"}), None),
        "a5" * 16: (
            _span(
                "a5" * 16,
                "node validate_sql",
                {"nl2sql.node.name": "validate_sql", "error.type": "syntax_error"},
            ),
            "validation-failed",
        ),
        "a6" * 16: (_span("a6" * 16, "invoke_workflow nl2sql", {"tenant.id": "globex"}), "watched-tenants"),
        "a7" * 16: (_span("a7" * 16, "invoke_workflow nl2sql", {"tenant.id": "zeta"}, ms=2500), "slow"),
    }.items()
}


@pytest.mark.timeout(120)
def test_sampler_policies_decide_as_documented(tool: Callable[[str], Path], tmp_path: Path) -> None:
    """Real spans through the real sampler (its policies, probabilistic share 0): errors, slow, not
    answered, failed validation and watched tenants are kept with the policy recorded; an answered
    trace and one WITHOUT nl2sql.outcome (today's app) are not."""
    ports = {name: _free_port() for name in ("http", "grpc", "health", "metrics")}
    override = {
        "extensions": {"health_check": {"endpoint": f"127.0.0.1:{ports['health']}"}},
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{ports['grpc']}"},
                    "http": {"endpoint": f"127.0.0.1:{ports['http']}"},
                }
            }
        },
        "exporters": {"debug": {"verbosity": "detailed"}},
        "service": {
            "pipelines": {"traces": {"exporters": ["debug"]}},
            "telemetry": {
                "metrics": {
                    "readers": [
                        {
                            "pull": {
                                "exporter": {"prometheus": {"host": "127.0.0.1", "port": ports["metrics"]}}
                            }
                        }
                    ]
                }
            },
        },
    }
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(override), encoding="utf-8")
    env = {**SAMPLING_ENV, "NL2SQL_SAMPLING_PERCENT": "0", "NL2SQL_SAMPLING_DECISION_WAIT": "1s"}
    proc = subprocess.Popen(
        [str(tool("otelcol-nl2sql")), f"--config={SAMPLER}", f"--config={path}", GATE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        body = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "stack-check"}}]
                    },
                    "scopeSpans": [{"spans": [span for span, _ in CASES.values()]}],
                }
            ]
        }
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{ports['http']}/v1/traces",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

        def decided() -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5) as r:
                lines = r.read().decode().splitlines()
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in lines
                if line.startswith("otelcol_processor_tail_sampling_global_count_traces_sampled")
            )

        deadline = time.monotonic() + 30
        while decided() < len(CASES) and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(2.5)  # the batch processor's timeout (2s) before the debug exporter prints
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5) as r:
            exposed = {
                line.split("{")[0].split(" ")[0] for line in r.read().decode().splitlines() if line[:1] != "#"
            }
        # what a sampler exposes once it has decided (losses and late spans appear only when they happen)
        sampler_names = {
            n
            for n in SCALE_OUT_METRICS
            if "tail_sampling" in n and not n.endswith(("too_early", "too_large", "late_span_age_count"))
        }
        assert sampler_names <= exposed, sorted(sampler_names - exposed)
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    kept = _kept_by_policy(err)
    expected = {tid: policy for tid, (_, policy) in CASES.items() if policy}
    assert kept == expected, err[-4000:]


def _kept_by_policy(debug_output: str) -> dict[str, str]:
    """trace id → tailsampling.policy on its span, from the debug exporter's detailed output (which the
    collector logs as JSON: its newlines arrive escaped)."""
    kept: dict[str, str] = {}
    for block in debug_output.replace("\\n", "\n").split("Span #")[1:]:
        block = block.split("ScopeSpans #", 1)[0]  # this span's lines only, not the next scope's
        trace_id = block.split("Trace ID", 1)[1].split(":", 1)[1].split()[0]
        if "-> tailsampling.policy: Str(" in block:
            kept[trace_id] = block.split("-> tailsampling.policy: Str(", 1)[1].split(")", 1)[0]
    return kept


def test_overlay_renders_an_agent_and_two_samplers() -> None:
    assert_ok(run([*compose_cli(), "-f", COMPOSE, "-f", SCALE, "config", "-q"]))
    services = render(COMPOSE, SCALE)["services"]
    agent = services["collector"]
    assert agent["command"] == ["--config=/etc/otelcol/config.yaml", "--config=/etc/otelcol/agent.yaml"]
    samplers = sorted(n for n in services if n.startswith("sampler-"))
    assert len(samplers) >= 2
    for name in samplers:
        svc = services[name]
        assert svc["image"] == agent["image"], "both tiers run the same collector build"
        assert GATE in svc["command"]
        assert "sampler" in svc["networks"]["default"]["aliases"], "the agent finds samplers by DNS"
        assert not svc.get("ports"), "samplers are reached inside the Docker network only"
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        assert svc["healthcheck"]["test"], name
        assert agent["depends_on"][name]["condition"] == "service_healthy"
    for svc in services.values():
        for port in svc.get("ports") or []:
            assert port.get("host_ip") == "127.0.0.1", port
    env_keys = set(load_yaml_env())
    for key in services[samplers[0]]["environment"]:
        if key.startswith("NL2SQL_"):
            assert key in env_keys, f"{key} has no default in compose/.env"
    # Prometheus scrapes exactly the sampler services of the overlay
    targets = {
        t
        for job in load_yaml(SCRAPE)["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    assert targets == {f"{n}:8888" for n in samplers}
    mounts = {v["target"]: v for v in services["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus/scrape.d/samplers.yml"]["source"]) == SCRAPE


def load_yaml_env() -> dict[str, str]:
    out = {}
    for line in ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_make_up_scale_uses_the_overlay() -> None:
    proc = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "show"],
        input="show:\n\t@echo $$COMPOSE_FILES\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "COMPOSE_FILES"} | {"SCALE": "1"},
        check=False,
        timeout=30,
    )
    assert_ok(proc)
    assert proc.stdout.split() == ["compose/docker-compose.yml", "compose/docker-compose.scale.yml"]
