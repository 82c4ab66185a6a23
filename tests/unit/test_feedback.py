"""Feedback from another caller, a day later: lands on the rated request's trace, workflow span, tenant
and service (from the audit log), never the caller's; bad input is refused with exit 2 and nothing written."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from apps import pipeline
from nl2sql_observability import feedback, record_feedback
from nl2sql_observability.audit import AuditLog, AuditSettings, get_audit_log, set_audit_log
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from nl2sql_observability.cli import main
from nl2sql_observability.configurator import build_telemetry
from nl2sql_observability.context import UserContext, user_context
from nl2sql_observability.exporter_settings import ObservabilitySettings
from nl2sql_observability.feedback import Emitter, FeedbackError
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk._logs import export as log_export
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

CONFIG = {"configurable": {"thread_id": "th-9", "tenant_id": "acme", "user_id": "u-9"}}
SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"


class Sent:
    """What the feedback providers (one set per rated service) exported."""

    def __init__(self) -> None:
        # renamed in SDK 1.39; the old name warns
        self.logs = (
            getattr(log_export, "InMemoryLogRecordExporter", None) or log_export.InMemoryLogExporter
        )()
        self.reader = InMemoryMetricReader()
        self.services: list[str] = []

    def factory(self, service: str) -> Emitter:
        self.services.append(service)
        telemetry = build_telemetry(
            ObservabilitySettings.model_validate({"exporter": "none"}),
            extra_metric_readers=[self.reader],
            extra_log_processors=[SimpleLogRecordProcessor(self.logs)],
            shutdown_on_exit=False,
            resource_attributes={"service.name": service},
        )
        return Emitter(telemetry.logger_provider, telemetry.meter_provider, lambda: None)

    def records(self) -> list[Any]:
        return list(self.logs.get_finished_logs())

    def evaluations(self) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "nl2sql.evaluations"
            for p in m.data.data_points
        ]


@pytest.fixture
def app_run(captured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """One answered request of the pipeline app (zero-code), its workflow span, the audit log file."""
    audit_path = tmp_path / "audit.log"
    set_audit_log(AuditLog(AuditSettings(path=audit_path)))
    monkeypatch.setenv("OBSERVABILITY_AUDIT_PATH", str(audit_path))
    inst = Nl2sqlInstrumentor()
    inst.instrument(settings=InstrumentorSettings())
    sqlite = SQLite3Instrumentor()
    sqlite.instrument(tracer_provider=captured.telemetry.tracer_provider)
    sent = Sent()
    monkeypatch.setattr(feedback, "emitter_factory", sent.factory)
    feedback.shutdown_emitters()
    try:
        model = pipeline.GenericFakeChatModel(messages=pipeline.replies("SELECT id FROM orders"))
        pipeline.build_pipeline(pipeline.make_db(), model).invoke({"question": "q"}, config=CONFIG)
        (span,) = [s for s in captured.spans() if s.name == "invoke_workflow nl2sql"]
        yield span, audit_path, sent
    finally:
        feedback.shutdown_emitters()
        sqlite.uninstrument()
        inst.uninstrument()
        set_audit_log(None)


def _audit(path: Path) -> list[dict[str, Any]]:
    audit_log = get_audit_log()
    assert audit_log is not None
    assert audit_log.flush(30)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_feedback_a_day_later_lands_on_the_rated_trace_and_tenant(app_run) -> None:
    span, audit_path, sent = app_run
    trace_id = f"{span.context.trace_id:032x}"
    later = datetime.now(timezone.utc) + timedelta(hours=24)
    # another caller, in another tenant's context, claims nothing it could make stick
    with time_machine.travel(later, tick=True), user_context(UserContext(tenant_id="evil")):
        result = record_feedback(trace_id, label="thumbs_down", comment=f"wrong; my key is {SECRET}")
    assert result.tenant_id == "acme"
    assert result.negative
    (record,) = sent.records()
    log = record.log_record
    assert log.event_name == "gen_ai.evaluation.result"
    assert log.trace_id == span.context.trace_id
    assert log.span_id == span.context.span_id  # the rated workflow span
    assert log.attributes["gen_ai.evaluation.name"] == "user_feedback"
    assert log.attributes["gen_ai.evaluation.score.label"] == "thumbs_down"
    assert log.attributes["tenant.id"] == "acme"
    assert SECRET not in log.attributes["gen_ai.evaluation.explanation"]
    assert log.timestamp - span.end_time >= 24 * 3600 * 10**9 - 60 * 10**9
    assert record.resource.attributes["service.name"] == sent.services[0]
    (point,) = sent.evaluations()
    assert dict(point.attributes) == {
        "gen_ai.evaluation.name": "user_feedback",
        "gen_ai.evaluation.score.label": "thumbs_down",
        "nl2sql.evaluation.negative": "true",
        "tenant.id": "acme",
    }
    events = _audit(audit_path)
    (request,) = [e for e in events if e["kind"] == "request"]
    (rated,) = [e for e in events if e["kind"] == "feedback"]
    assert sent.services == [request["service_name"]]
    assert (rated["trace_id"], rated["span_id"], rated["tenant_id"]) == (
        trace_id,
        f"{span.context.span_id:016x}",
        "acme",
    )
    assert rated["outcome"] == "answered"
    assert rated["evaluation"]["label"] == "thumbs_down"
    assert SECRET not in (rated["response_text"] or "")
    assert rated["timestamp"] > request["timestamp"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--score", "7"], "out of range"),
        (["--score", "nan"], "out of range"),
        (["--score", "x"], "not a number"),
        (["--label", "meh"], "not allowed"),
        ([], "give a score, a label"),
        (["--label", "thumbs_up", "--name", "bad name"], "evaluation name"),
    ],
)
def test_bad_feedback_exits_2_and_writes_nothing(app_run, capsys, args: list[str], says: str) -> None:
    span, audit_path, sent = app_run
    before = _audit(audit_path)
    assert main(["feedback", f"{span.context.trace_id:032x}", *args]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert _audit(audit_path) == before
    assert sent.records() == []


@pytest.mark.parametrize("trace_id", ["0" * 31 + "1", "not-a-trace"])
def test_unknown_or_malformed_trace_id_exits_2(app_run, capsys, trace_id: str) -> None:
    _span, audit_path, sent = app_run
    before = _audit(audit_path)
    assert main(["feedback", trace_id, "--label", "thumbs_up"]) == 2
    assert "trace id" in capsys.readouterr().err
    assert _audit(audit_path) == before
    assert sent.records() == []


def test_cli_feedback_and_audit_show_together(app_run, capsys) -> None:
    span, audit_path, sent = app_run
    trace_id = f"{span.context.trace_id:032x}"
    assert main(["feedback", trace_id, "--score", "0.9", "--comment", "spot on"]) == 0
    assert "tenant acme" in capsys.readouterr().out
    assert [r.log_record.attributes["nl2sql.evaluation.negative"] for r in sent.records()] == [False]
    assert main(["audit", "show", "--trace-id", trace_id, "--path", str(audit_path)]) == 0
    out = capsys.readouterr().out
    assert "kind=request" in out
    assert "outcome=answered" in out
    assert "kind=feedback" in out
    assert "spot on" in out
    assert "SELECT id FROM orders" in out  # the generated SQL, in the LLM call's response


def test_audit_search_by_outcome_finds_the_prompts(app_run, capsys) -> None:
    _span, audit_path, _sent = app_run
    model = pipeline.GenericFakeChatModel(messages=pipeline.replies("DROP TABLE orders", "DROP x", "DROP y"))
    pipeline.build_pipeline(pipeline.make_db(), model).invoke({"question": "drop it"}, config=CONFIG)
    _audit(audit_path)
    assert main(["audit", "search", "--outcome", "validation_rejected", "--path", str(audit_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("kind=request") == 1
    assert out.count("model=") == 3 + 0  # the three LLM calls of the rejected request (and no other)
    assert main(["audit", "search", "--outcome", "timeout", "--path", str(audit_path)]) != 0


def test_record_feedback_raises_for_bad_input(app_run) -> None:
    span, _audit_path, _sent = app_run
    with pytest.raises(FeedbackError, match="out of range"):
        record_feedback(f"{span.context.trace_id:032x}", score=-1)
