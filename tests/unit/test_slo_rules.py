"""scripts/slo_rules.py: bad SLO files get one clear line and exit 2, and write nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slo_rules", ROOT / "scripts" / "slo_rules.py")
    assert spec
    assert spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["slo_rules"] = mod
    spec.loader.exec_module(mod)
    return mod


slo_rules = _generator()
GOOD = (ROOT / "slo" / "nl2sql.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("objective: 99.5", "objective: 100"), "objectives.0.objective"),
        (("window: 15m", "window: 15 minutes"), "is not a duration"),
        (("min_events: 30", "min_events: -1"), "min_events"),
        (("engine: grafana", "engine: nagios"), "engine"),
        (("    histogram: nl2sql_request_duration_seconds\n", ""), "either errors and total, or histogram"),
        (("group_by: [job, deployment_environment_name]", "group_by: [job, service.name]"), "label name"),
        (("name: latency", "name: availability"), "unique: availability"),
        (("histograms: native", "histograms: native\ncolour: blue"), "colour"),
        (("version: nl2sql-slo/v1", "version: [unclosed"), "cannot read it as YAML"),
        (("alert: TelemetryDropped", "alert: NL2SQLServiceSilent"), "alert names must be unique"),
        (("      unit: items\n", "      unit: Items/s!\n"), "pipeline.0.rate.unit"),
        (
            (
                "    ratio:\n      errors: otelcol_loadbalancer",
                "    rate: {unit: x, counters: [y]}\n    ratio:\n      errors: otelcol_loadbalancer",
            ),
            "exactly one of ratio, rate",
        ),
        (("    runbook: >-\n      A sampler is down", "    runbok: >-\n      A sampler is down"), "runbook"),
    ],
)
def test_bad_slo_file_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOD
    bad = tmp_path / "slo.yml"
    bad.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    out = tmp_path / "out"
    code = slo_rules.main(["--slo-file", str(bad), "--out", str(out), "--sloth", sys.executable])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_missing_sloth_is_one_line_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = slo_rules.main(["--sloth", str(tmp_path / "no-sloth"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "build-tools.sh sloth" in err


def test_floor_is_in_every_window_of_every_objective() -> None:
    slo = slo_rules.load(ROOT / "slo" / "nl2sql.yml")
    spec = slo_rules.sloth_spec(slo)
    for s, o in zip(spec["slos"], slo.objectives, strict=True):
        floor = o.min_events if o.min_events is not None else slo.min_events
        assert f">= {floor}" in s["sli"]["raw"]["error_ratio_query"], s["name"]
        assert "{{.window}}" in s["sli"]["raw"]["error_ratio_query"]


def test_ratios_are_counted_exactly_never_extrapolated() -> None:
    """Every errors/total ratio (objectives, thresholds, pipeline) reads exact counts, not rate()/increase()
    of the counters except for a series that reset."""
    slo = slo_rules.load(ROOT / "slo" / "nl2sql.yml")
    q = slo_rules.Queries(slo)
    ratios = [q.error_ratio(o, "1h") for o in slo.objectives if o.errors is not None]
    ratios += [q.threshold_value(t) for t in slo.thresholds if t.ratio is not None]
    ratios += [q.pipeline_value(a) for a in slo.pipeline if a.ratio is not None]
    assert len(ratios) >= 4
    for expr in ratios:
        assert "rate(" not in expr, expr
        assert "last_over_time(" in expr
        # increase() only as the fallback of a series that reset
        assert expr.count("increase(") == expr.count("resets(") > 0, expr


@pytest.mark.parametrize(("factor", "message"), [("7", "no whole number of seconds"), ("0", ">= 1")])
def test_bad_time_scale_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], factor: str, message: str
) -> None:
    out = tmp_path / "out"
    code = slo_rules.main(["--time-scale", factor, "--out", str(out), "--sloth", sys.executable])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not out.exists()


def test_time_scale_without_out_refuses_to_overwrite_the_product_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    committed = {p: p.read_bytes() for p in (ROOT / "prometheus" / "rules").glob("slo-*.yml")}
    code = slo_rules.main(["--time-scale", "60", "--sloth", sys.executable])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "--out" in err, err
    assert {p: p.read_bytes() for p in committed} == committed


def test_time_scale_divides_every_duration() -> None:
    slo = slo_rules.load(ROOT / "slo" / "nl2sql.yml")
    clock = slo_rules.Clock(60)
    scaled = clock.scale(slo)
    assert [t.window for t in scaled.thresholds] == [clock(t.window) for t in slo.thresholds]
    assert scaled.thresholds[0].window == "15s"
    assert scaled.absent is not None
    assert (scaled.absent.sent_for, scaled.absent.silent_for) == ("30s", "10s")
    assert {a.for_ for a in scaled.pipeline} == {"5s"}
    windows = slo_rules.sloth_windows(clock)["spec"]
    assert windows["sloPeriod"] == "12h"
    assert windows["page"]["quick"] == {"errorBudgetPercent": 2, "shortWindow": "5s", "longWindow": "1m"}
    absent = slo_rules.prometheus_rules(scaled, clock)["groups"][1]["rules"][0]["expr"]
    assert "[2s])))[30s:1s]) >= 30" in absent
