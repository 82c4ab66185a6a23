"""Fixtures for the bootstrap's unit tests: the configurator's providers with in-memory exporters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from nl2sql_observability import instrumentation
from nl2sql_observability.configurator import Telemetry, build_telemetry
from nl2sql_observability.settings import ObservabilitySettings
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path_factory, monkeypatch):
    """Default audit log and demo database live under XDG_DATA_HOME: never the developer's own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))


@dataclass
class Captured:
    telemetry: Telemetry
    spans_exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        self.telemetry.tracer_provider.force_flush()
        return list(self.spans_exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        return found[0]

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        out: dict[str, Metric] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out[metric.name] = metric
        return out

    def points(self, name: str) -> list[Any]:
        metric = self.metrics().get(name)
        assert metric is not None, f"metric {name} not recorded; have {sorted(self.metrics())}"
        return list(metric.data.data_points)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """The real configurator pipeline (baggage processor, views, exemplar filter), exporting to memory."""
    for var in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_METRICS_EXEMPLAR_FILTER"):
        monkeypatch.delenv(var, raising=False)
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = build_telemetry(
        ObservabilitySettings.model_validate({"exporter": "none"}),
        extra_span_processors=[SimpleSpanProcessor(exporter)],
        extra_metric_readers=[reader],
        shutdown_on_exit=False,
    )
    instrumentation.use_providers(telemetry.tracer_provider, telemetry.meter_provider)
    try:
        yield Captured(telemetry, exporter, reader)
    finally:
        instrumentation.use_providers()
        telemetry.shutdown(timeout_s=5)


@dataclass
class AuditCall:
    """One call record the LLM instrumentation handed to the audit log."""

    record: Any

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.record._asdict())


@pytest.fixture
def audit_calls(monkeypatch: pytest.MonkeyPatch) -> list[AuditCall]:
    """Capture the LLM call records submitted to `audit.submit` (the audit log is not written; request
    and feedback records are dropped)."""
    import nl2sql_observability.audit as audit
    from nl2sql_observability.callrecord import CallRecord

    calls: list[AuditCall] = []

    def fake(record: Any) -> bool:
        if isinstance(record, CallRecord):
            calls.append(AuditCall(record))
        return True

    monkeypatch.setattr(audit, "submit", fake)
    return calls


@pytest.fixture(autouse=True)
def _no_instrumentor_left_behind():
    """A test that ran the demo in process leaves the zero-code instrumentor off again."""
    yield
    from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    for instrumentor in (Nl2sqlInstrumentor(), SQLite3Instrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
