"""Built-in SQL evaluators (sql_parses, sql_read_only) and a user's own: each result is a
gen_ai.evaluation.result event on the span that produced the SQL (chat span: generated; DB span:
executed), counted in nl2sql.evaluations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from apps import pipeline
from nl2sql_observability import evaluators, instrumentation
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs import export as log_export
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

CONFIG = {"configurable": {"tenant_id": "acme"}}


@pytest.mark.parametrize(
    ("sql", "parses", "read_only"),
    [
        ("SELECT id FROM orders WHERE status = 'open'", "pass", "pass"),
        ("WITH c AS (SELECT 1 AS x) SELECT x FROM c", "pass", "pass"),
        ("SELECT a FROM t UNION SELECT b FROM u", "pass", "pass"),
        ("DROP TABLE orders", "pass", "fail"),
        ("DELETE FROM orders", "pass", "fail"),
        ("UPDATE orders SET amount = 0", "pass", "fail"),
        ("GRANT ALL ON orders TO mallory", "pass", "fail"),
        ("SELECT * INTO copy FROM orders", "pass", "fail"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "pass", "fail"),
        ("SELECT 1; DROP TABLE orders", "pass", "fail"),
        ("SELEC nonsense", "fail", "fail"),
        ("SELECT (1", "fail", "fail"),
    ],
)
def test_built_in_evaluators(sql: str, parses: str, read_only: str) -> None:
    assert evaluators.sql_parses(None, sql, None) == (parses, 1.0 if parses == "pass" else 0.0)
    assert evaluators.sql_read_only(None, sql, None)[0] == read_only


@pytest.fixture
def events(captured) -> Iterator[Any]:
    exporter = (getattr(log_export, "InMemoryLogRecordExporter", None) or log_export.InMemoryLogExporter)()
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    instrumentation.use_providers(captured.telemetry.tracer_provider, captured.telemetry.meter_provider, logs)
    inst = Nl2sqlInstrumentor()
    inst.instrument(settings=InstrumentorSettings())
    sqlite = SQLite3Instrumentor()
    sqlite.instrument(tracer_provider=captured.telemetry.tracer_provider)
    try:
        yield exporter
    finally:
        sqlite.uninstrument()
        inst.uninstrument()
        evaluators._registered.clear()


def test_generated_and_executed_sql_are_evaluated_on_their_spans(captured, events, audit_calls) -> None:
    seen: list[tuple[str | None, str, int | None]] = []

    def row_budget(question: str | None, sql: str, rows: int | None) -> Any:
        seen.append((question, sql, rows))
        return None if rows is None else ("within_budget" if rows <= 1 else "too_many_rows")

    evaluators.register_evaluator("row_budget", row_budget)
    model = pipeline.GenericFakeChatModel(
        messages=pipeline.replies("DROP TABLE orders", "SELECT id FROM orders")
    )
    pipeline.build_pipeline(pipeline.make_db(), model).invoke({"question": "List the orders"}, config=CONFIG)
    assert evaluators.drain(30)
    spans = captured.spans()
    chats = {s.context.span_id for s in spans if s.name.startswith("chat ")}
    (db,) = [s for s in spans if s.name == "SELECT"]
    results = Counter()
    for record in events.get_finished_logs():
        log = record.log_record
        assert log.event_name == "gen_ai.evaluation.result"
        assert log.attributes["tenant.id"] == "acme"
        name = log.attributes["gen_ai.evaluation.name"]
        label = log.attributes["gen_ai.evaluation.score.label"]
        on = "chat" if log.span_id in chats else "db" if log.span_id == db.context.span_id else "?"
        results[(name, label, on)] += 1
    assert results == {
        ("sql_parses", "pass", "chat"): 2,
        ("sql_read_only", "fail", "chat"): 1,  # the DROP TABLE the model generated
        ("sql_read_only", "pass", "chat"): 1,
        ("sql_parses", "pass", "db"): 1,
        ("sql_read_only", "pass", "db"): 1,
        ("row_budget", "too_many_rows", "db"): 1,  # executed: 2 rows fetched
    }
    assert ("List the orders", "SELECT id FROM orders", 2) in seen
    counted = Counter()
    for point in captured.points("nl2sql.evaluations"):
        a = point.attributes
        counted[
            (a["gen_ai.evaluation.name"], a["gen_ai.evaluation.score.label"], a["nl2sql.evaluation.negative"])
        ] += point.value
    assert counted[("sql_read_only", "fail", "true")] == 1
    assert counted[("sql_parses", "pass", "false")] == 3


def test_a_bad_user_evaluator_changes_nothing(captured, events, audit_calls) -> None:
    def broken(question: str | None, sql: str, rows: int | None) -> Any:
        raise RuntimeError("evaluator bug")

    evaluators.register_evaluator("broken", broken)
    model = pipeline.GenericFakeChatModel(messages=pipeline.replies("SELECT id FROM orders"))
    out = pipeline.build_pipeline(pipeline.make_db(), model).invoke({"question": "q"}, config=CONFIG)
    assert out["answer"] == "2 rows"
    assert evaluators.drain(30)
    names = {r.log_record.attributes["gen_ai.evaluation.name"] for r in events.get_finished_logs()}
    assert names == {"sql_parses", "sql_read_only"}
    with pytest.raises(ValueError, match="not allowed"):
        evaluators.register_evaluator("sql_parses", broken)
