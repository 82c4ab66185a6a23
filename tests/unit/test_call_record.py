"""One LLM call, one record: the span, the metrics and the audit event each show the record's fields
(nothing is read back from the run state), and a tenant id the contract allows is shown as it is on
every road, even where the scrubber would take it for something else (here: an IP address)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nl2sql_observability import audit, llm_call, node, user_context
from nl2sql_observability.audit import AuditLog, AuditSettings, CallRecord, set_audit_log
from nl2sql_observability.audit.sinks import iter_file_events
from nl2sql_observability.scrubbing import ScrubbingSpanExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TENANT = "10.0.0.7"  # allowed by the contract's pattern; the IP rule would redact it as text


@pytest.fixture
def audit_path(tmp_path: Path) -> Any:
    path = tmp_path / "events.log"
    set_audit_log(AuditLog(AuditSettings(path=path)))
    yield path
    set_audit_log(None)


def test_span_metrics_and_audit_event_show_the_records_fields(captured, audit_path, monkeypatch) -> None:
    scrubbed = InMemorySpanExporter()  # the road to the collector: through the scrubbing exporter
    captured.telemetry.tracer_provider.add_span_processor(
        SimpleSpanProcessor(ScrubbingSpanExporter(scrubbed))
    )
    records: list[CallRecord] = []
    real_submit = audit.submit
    monkeypatch.setattr(audit, "submit", lambda r: records.append(r) or real_submit(r))
    with (
        user_context({"tenant_id": TENANT, "user_id": "u-1", "session_id": "s-1"}),
        node("generate_sql"),
        llm_call(model="gpt-4o", provider="openai", prompt="list the top customers") as call,
    ):
        call.set_response("SELECT name FROM customers", input_tokens=120, output_tokens=30)
    (record,) = records
    assert set_audit_log(None) is None  # close: the writer stored everything queued

    (span,) = [s for s in scrubbed.get_finished_spans() if s.name == "chat gpt-4o"]
    assert (span.context.trace_id, span.context.span_id) == (record.trace_id, record.span_id)
    assert span.attributes["tenant.id"] == record.tenant_id == TENANT
    assert span.attributes["nl2sql.node.name"] == record.node == "generate_sql"
    assert span.attributes["gen_ai.request.model"] == record.model
    assert span.attributes["gen_ai.response.model"] == record.response_model
    assert span.attributes["gen_ai.usage.input_tokens"] == record.input_tokens
    assert span.attributes["gen_ai.usage.output_tokens"] == record.output_tokens
    assert record.cost is not None
    assert span.attributes["gen_ai.usage.cost.amount"] == record.cost

    tokens = {p.attributes["gen_ai.token.type"]: p for p in captured.points("nl2sql.llm.tokens")}
    assert tokens["input"].value == record.input_tokens
    assert tokens["output"].value == record.output_tokens
    assert tokens["input"].attributes["tenant.id"] == TENANT
    (cost,) = captured.points("nl2sql.llm.cost")
    assert cost.value == pytest.approx(record.cost)
    (duration,) = captured.points("gen_ai.client.operation.duration")
    assert duration.sum == pytest.approx(record.duration_s)

    ((event, _),) = list(iter_file_events(audit_path))
    assert (event["trace_id"], event["span_id"]) == (record.trace_id_hex, record.span_id_hex)
    assert (event["tenant_id"], event["user_id"], event["session_id"]) == (TENANT, "u-1", "s-1")
    assert event["node"] == record.node
    assert event["model"] == record.model
    assert event["prompt_text"] == record.prompt_text
    assert event["response_text"] == record.response_text
    assert event["tokens"] == {"input": 120, "output": 30, "total": record.total_tokens}
    assert event["latency_ms"] == pytest.approx(record.duration_s * 1000, abs=0.001)
    assert event["status"] == record.status == "ok"
