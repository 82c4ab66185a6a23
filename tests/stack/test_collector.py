"""Collector: the ocb manifest matches the configs, and the real binary accepts the configs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, _free_port, assert_ok, load_yaml, missing, run
from .promql_sources import COLLECTOR_METRICS

COLLECTOR = ROOT / "collector"
BASE = COLLECTOR / "config.yaml"
OVERLAY = COLLECTOR / "overlay-vendor.yaml"
AGENT = COLLECTOR / "agent.yaml"  # the scale-out profile's two tiers (tests/stack/test_scale_out.py)
SAMPLER = COLLECTOR / "sampler.yaml"
CONFIGS = (BASE, OVERLAY, AGENT, SAMPLER)
MANIFEST = COLLECTOR / "manifest.yaml"
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
VENDOR_ENV = {
    "OTLP_VENDOR_ENDPOINT": "https://otlp.example.invalid",
    "OTLP_VENDOR_HEADER_NAME": "x-honeycomb-team",
    "OTLP_VENDOR_HEADER_VALUE": "test-key",
}


_RES = {"attributes": [{"key": "service.name", "value": {"stringValue": "stack-check"}}]}
OTLP_JSON = {
    "traces": {
        "resourceSpans": [
            {
                "resource": _RES,
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "node generate_sql",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000100000000",
                                "attributes": [
                                    {
                                        "key": "api_key",
                                        "value": {"stringValue": "sk-abcdefghijklmnopqrstuvwxyz"},
                                    }
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    },
    "metrics": {
        "resourceMetrics": [
            {
                "resource": _RES,
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "stack.check",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [{"asInt": "1", "timeUnixNano": "1700000000000000000"}],
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    },
    "logs": {
        "resourceLogs": [
            {
                "resource": _RES,
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"timeUnixNano": "1700000000000000000", "body": {"stringValue": "hello"}}
                        ]
                    }
                ],
            }
        ]
    },
}


def used_components(*files: Path) -> dict[str, set[str]]:
    """Component types (the part before '/') each config file defines, per kind."""
    used: dict[str, set[str]] = {k: set() for k in KINDS}
    for f in files:
        cfg = load_yaml(f) or {}
        for kind in KINDS:
            for key in cfg.get(kind) or {}:
                used[kind].add(key.split("/", 1)[0])
    return used


def gomodcache() -> Path:
    env = os.environ.get("GOMODCACHE")
    if env:
        return Path(env)
    try:
        out = subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, timeout=30
        )
        return Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return Path.home() / "go" / "pkg" / "mod"


def escape_module(path: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def module_dir(cache: Path, module: str, version: str) -> Path:
    """The module's source: GOMODCACHE (warm after `make tools`), else `go mod download` (Go proxy)."""
    path = cache / f"{escape_module(module)}@{version}"
    if path.is_dir():
        return path
    try:
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=ROOT,
        )
        return Path(json.loads(out.stdout)["Dir"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        missing(f"{module}@{version} is not in GOMODCACHE ({cache}) and `go mod download` failed")
        raise


def manifest_types() -> dict[str, set[str]]:
    """Component types of the manifest's modules, read from each module's own metadata.yaml."""
    manifest = load_yaml(MANIFEST)
    cache = gomodcache()
    types: dict[str, set[str]] = {k: set() for k in KINDS}
    for kind in KINDS:
        for entry in manifest.get(kind) or []:
            module, version = entry["gomod"].split()
            meta = module_dir(cache, module, version) / "metadata.yaml"
            types[kind].add(load_yaml(meta)["type"])
    return types


def test_manifest_pins_one_release() -> None:
    manifest = load_yaml(MANIFEST)
    versions = {e["gomod"].split()[1] for k in KINDS for e in manifest.get(k) or []}
    assert versions == {"v0.159.0"}, versions
    assert manifest["dist"]["name"] == "otelcol-nl2sql"


def test_manifest_lists_exactly_the_components_the_configs_use() -> None:
    used = used_components(*CONFIGS)
    have = manifest_types()
    for kind in KINDS:
        assert have[kind] == used[kind], (
            f"{kind}: manifest {sorted(have[kind])} != configs {sorted(used[kind])}"
        )


def test_binary_contains_exactly_the_manifest_components(tool: Callable[[str], Path]) -> None:
    proc = run([tool("otelcol-nl2sql"), "components"])
    assert_ok(proc)
    comps = yaml.safe_load(proc.stdout)
    used = used_components(*CONFIGS)
    for kind in KINDS:
        built = {c["name"] for c in comps.get(kind) or []}
        assert built == used[kind], (
            f"{kind}: binary {sorted(built)} != configs {sorted(used[kind])} (rebuild: make tools)"
        )


def test_pipelines_shape() -> None:
    cfg = load_yaml(BASE)
    pipes = cfg["service"]["pipelines"]
    for name, pipe in pipes.items():
        assert pipe["processors"][0] == "memory_limiter", f"{name}: memory_limiter must come first"
        assert pipe["processors"][-1] == "batch", f"{name}: batch must come last"
        assert "redaction" in pipe["processors"], name
    assert "span_metrics" in pipes["traces"]["exporters"]
    assert "span_metrics" in pipes["metrics"]["receivers"]
    for name, exp in cfg["exporters"].items():
        if name.startswith(("otlp_grpc", "otlp_http")):
            assert exp["sending_queue"]["storage"] == "file_storage/queue", name
            assert exp["retry_on_failure"]["enabled"] is True, name
    assert "health_check" in cfg["service"]["extensions"]
    readers = cfg["service"]["telemetry"]["metrics"]["readers"]
    assert readers[0]["pull"]["exporter"]["prometheus"]["port"] == 8888


def test_overlay_replaces_every_local_exporter() -> None:
    overlay = load_yaml(OVERLAY)
    base = load_yaml(BASE)
    for name in base["service"]["pipelines"]:
        exporters = overlay["service"]["pipelines"][name]["exporters"]
        assert "otlp_http/vendor" in exporters, name
        assert not {
            e
            for e in exporters
            if e.startswith(("otlp_grpc/jaeger", "otlp_http/prometheus", "otlp_http/victorialogs", "debug"))
        }, name


def test_exporter_metric_names_exist_in_exporterhelper() -> None:
    meta = (
        module_dir(gomodcache(), "go.opentelemetry.io/collector/exporter/exporterhelper", "v0.159.0")
        / "metadata.yaml"
    )
    declared = {f"otelcol_{name}" for name in load_yaml(meta)["telemetry"]["metrics"]}
    used = {n for n in COLLECTOR_METRICS if n.startswith("otelcol_exporter_")}
    assert used <= declared, sorted(used - declared)


def test_validate_base(tool: Callable[[str], Path]) -> None:
    assert_ok(run([tool("otelcol-nl2sql"), "validate", f"--config={BASE}"]))


def test_validate_base_plus_vendor_overlay(tool: Callable[[str], Path]) -> None:
    assert_ok(
        run([tool("otelcol-nl2sql"), "validate", f"--config={BASE}", f"--config={OVERLAY}"], env=VENDOR_ENV)
    )


def _local_override(tmp: Path) -> tuple[Path, dict[str, int]]:
    ports = {name: _free_port() for name in ("grpc", "http", "health", "metrics")}
    override = {
        "extensions": {
            "health_check": {"endpoint": f"127.0.0.1:{ports['health']}"},
            "file_storage/queue": {
                "directory": str(tmp / "queue"),
                "compaction": {"directory": str(tmp / "queue")},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{ports['grpc']}"},
                    "http": {"endpoint": f"127.0.0.1:{ports['http']}"},
                }
            }
        },
        # the backends do not exist here: point the exporters at closed local ports
        "exporters": {
            "otlp_grpc/jaeger": {"endpoint": "127.0.0.1:9"},
            "otlp_http/prometheus": {"endpoint": "http://127.0.0.1:9"},
            "otlp_http/victorialogs": {"logs_endpoint": "http://127.0.0.1:9/insert/opentelemetry/v1/logs"},
        },
        "service": {
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
            }
        },
    }
    path = tmp / "local.yaml"
    path.write_text(yaml.safe_dump(override), encoding="utf-8")
    return path, ports


@pytest.mark.timeout(120)
def test_collector_starts_healthy_and_serves_its_own_metrics(
    tool: Callable[[str], Path], tmp_path: Path
) -> None:
    """A real start catches what `validate` cannot (regexes, OTTL, storage): healthy within 30s."""
    otelcol = tool("otelcol-nl2sql")
    override, ports = _local_override(tmp_path)
    proc = subprocess.Popen(
        [str(otelcol), f"--config={BASE}", f"--config={override}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports['health']}/", timeout=2) as r:
                    healthy = r.status == 200
            except OSError:
                pass
            if healthy:
                break
            time.sleep(0.3)
        if not healthy:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
            pytest.fail(f"collector not healthy within 30s (exit {proc.returncode}):\n{err[-4000:]}")
        for signal, payload in OTLP_JSON.items():
            req = urllib.request.Request(
                f"http://127.0.0.1:{ports['http']}/v1/{signal}",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200, signal
        time.sleep(3)  # batch timeout 2s
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5) as r:
            exposed = {
                line.split("{")[0].split(" ")[0]
                for line in r.read().decode().splitlines()
                if line and line[0] != "#"
            }
        # what the dashboards and otelcol:dropped_items:rate5m read, and exists once data has flowed
        # (send_failed / enqueue_failed appear only on failure: checked against metadata.yaml below)
        expected = {n for n in COLLECTOR_METRICS if "send_failed" not in n and "enqueue_failed" not in n}
        expected -= {
            "otelcol_exporter_sent_spans",
            "otelcol_exporter_sent_metric_points",
            "otelcol_exporter_sent_log_records",
        }  # backends are down here
        assert expected <= exposed, f"not exposed by the collector: {sorted(expected - exposed)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _through_collector(otelcol: Path, tmp_path: Path, attrs: dict[str, str | int]) -> str:
    """Send one span with these attributes through the real collector (config.yaml's processors) to
    a detailed debug exporter; return what the exporter printed."""
    override, ports = _local_override(tmp_path)
    extra = yaml.safe_load(override.read_text(encoding="utf-8"))
    extra["exporters"]["debug"] = {"verbosity": "detailed"}
    extra["service"]["pipelines"] = {"traces": {"exporters": ["debug", "span_metrics"]}}
    override.write_text(yaml.safe_dump(extra), encoding="utf-8")
    span = json.loads(json.dumps(OTLP_JSON["traces"]))
    span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = [
        {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
        for k, v in attrs.items()
    ]
    proc = subprocess.Popen(
        [str(otelcol), f"--config={BASE}", f"--config={override}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{ports['http']}/v1/traces",
                    data=json.dumps(span).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5):
                    break
            except OSError:
                time.sleep(0.3)
        time.sleep(3)  # batch timeout 2s
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "node generate_sql" in err, err[-3000:]
    return err


@pytest.mark.timeout(120)
def test_redaction_and_genai_content_drop(tool: Callable[[str], Path], tmp_path: Path) -> None:
    """The second redaction layer on real data: secret keys and values masked, GenAI content dropped,
    token counts and the contract's attributes kept."""
    attrs: dict[str, str | int] = {
        "api_key": "not-a-pattern-but-a-secret-key-name",
        "note": "call with Bearer abcdefghijklmnopqrstuvwxyz0123",
        "db.statement.dsn": "postgres://app:hunter2@db:5432/x",
        "gen_ai.input.messages": "PROMPT TEXT MUST NOT LEAVE",
        "gen_ai.output.messages": "RESPONSE TEXT MUST NOT LEAVE",
        "gen_ai.usage.input_tokens": 12,
        "nl2sql.node.name": "generate_sql",
        "tenant.id": "acme",
    }
    err = _through_collector(tool("otelcol-nl2sql"), tmp_path, attrs)
    for leaked in (
        "not-a-pattern-but-a-secret-key-name",
        "abcdefghijklmnopqrstuvwxyz0123",
        "hunter2",
        "PROMPT TEXT",
        "RESPONSE TEXT",
    ):
        assert leaked not in err, f"{leaked!r} reached the exporter"
    assert "gen_ai.usage.input_tokens: Int(12)" in err
    assert "tenant.id: Str(acme)" in err


# Test card numbers published by the card networks (Luhn-valid), in the layouts people write them.
CARDS = {
    "card.visa": "4111111111111111",
    "card.visa_spaced": "4111 1111 1111 1111",
    "card.visa_13": "4222222222222",
    "card.mastercard": "5555555555554444",
    "card.mastercard_2series": "2223003122003222",
    "card.amex": "378282246310005",
    "card.amex_dashed": "3782-822463-10005",
    "card.discover": "6011111111111117",
    "card.diners": "30569309025904",
    "card.jcb": "3530111333300000",
    "card.unionpay": "6200000000000005",
}
# 13-16 digit values that are not card numbers: no issuer has that prefix with that length.
NOT_CARDS = {
    "event.epoch_ms": "1732435200000",
    "event.epoch_us": "1732435200000000",
    "order.id": "9876543210123456",
    "invoice.number": "70000000000001",
    "db.rows": "1234567890123",
    "visa_prefix_wrong_length": "411111111111111",
    "amex_prefix_wrong_length": "3400000000000000",
}


@pytest.mark.timeout(120)
def test_card_masking_keeps_epoch_milliseconds_and_ids(tool: Callable[[str], Path], tmp_path: Path) -> None:
    """Issuer prefix and length decide, not "any 13-16 digits": cards are masked (also inside text),
    timestamps and ids of the same lengths pass through the real collector unchanged."""
    attrs: dict[str, str | int] = {**CARDS, **NOT_CARDS, "nl2sql.node.name": "generate_sql"}
    attrs["note"] = f"paid with {CARDS['card.visa']} at {NOT_CARDS['event.epoch_ms']}"
    err = _through_collector(tool("otelcol-nl2sql"), tmp_path, attrs)
    for key, value in CARDS.items():
        assert f"{key}: Str(****)" in err, f"{key}={value!r} was not masked"
        assert value not in err, f"{key}={value!r} reached the exporter"
    for key, value in NOT_CARDS.items():
        assert f"{key}: Str({value})" in err, f"{key}={value!r} did not survive"
    assert f"note: Str(paid with **** at {NOT_CARDS['event.epoch_ms']})" in err
