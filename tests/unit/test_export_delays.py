"""Telemetry visible fast in the local environment: short batch delays and metric interval derived
from `deployment.environment.name=local`; the SDK's defaults elsewhere; the user's OTEL_* always wins."""

from __future__ import annotations

import pytest
from nl2sql_observability import configurator
from nl2sql_observability.configurator import ExportDelays, build_telemetry, export_delays
from nl2sql_observability.settings import ObservabilitySettings

LOCAL = ObservabilitySettings.model_validate({"exporter": "none"})
PROD = ObservabilitySettings.model_validate({"exporter": "none", "environment": "production"})


def test_local_gets_short_delays_and_other_environments_the_sdk_defaults() -> None:
    assert LOCAL.environment == "local"  # our default environment
    assert export_delays(LOCAL, {}) == ExportDelays(
        configurator.LOCAL_SPAN_DELAY_MS,
        configurator.LOCAL_LOG_DELAY_MS,
        configurator.LOCAL_METRIC_INTERVAL_MS,
    )
    assert export_delays(PROD, {}) == ExportDelays(None, None, None)


def test_the_users_explicit_values_win_and_empty_means_unset() -> None:
    env = {
        "OTEL_BSP_SCHEDULE_DELAY": "5000",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "OTEL_BLRP_SCHEDULE_DELAY": " ",
    }
    delays = export_delays(LOCAL, env)
    assert delays.span_delay_ms is None
    assert delays.metric_interval_ms is None
    assert delays.log_delay_ms == configurator.LOCAL_LOG_DELAY_MS


@pytest.mark.parametrize(("environment", "expected_ms"), [("local", 200), ("production", 5000)])
def test_the_batch_span_processor_gets_them(
    monkeypatch: pytest.MonkeyPatch, environment: str, expected_ms: int
) -> None:
    for name in ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    settings = ObservabilitySettings.model_validate(
        {"exporter": "none", "environment": environment, "OTEL_TRACES_EXPORTER": "console"}
    )
    telemetry = build_telemetry(settings, shutdown_on_exit=False)
    try:
        (processor,) = telemetry.batch_processors
        # The SDK keeps the delay on its shared batch processor (no public accessor).
        assert processor._batch_processor._schedule_delay_millis == expected_ms
    finally:
        telemetry.shutdown(timeout_s=5)
