"""Every question ends in exactly one nl2sql.outcome, derived with zero code from what the run did: a
seeded corpus over three graph shapes (a SQL agent with ToolNodes, a plain pipeline with a validator
loop, the same pipeline async), each run classified right and the counts equal to the truth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apps import pipeline, sql_agent
from nl2sql_observability import set_outcome
from nl2sql_observability.audit import AuditLog, AuditSettings, get_audit_log, set_audit_log
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from nl2sql_observability.instrumentation import workflow
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.trace import StatusCode

CONFIG = {"configurable": {"thread_id": "th-1", "tenant_id": "acme", "user_id": "u-1"}}
GOOD = "SELECT count(*) FROM orders WHERE status = 'cancelled'"
NONE = "SELECT id FROM orders WHERE status = 'lost'"
BAD_COLUMN = "SELECT nope FROM orders"


@pytest.fixture
def zero_code(captured, tmp_path: Path):
    set_audit_log(AuditLog(AuditSettings(path=tmp_path / "audit.log")))
    inst = Nl2sqlInstrumentor()
    inst.instrument(settings=InstrumentorSettings())
    sqlite = SQLite3Instrumentor()
    sqlite.instrument(tracer_provider=captured.telemetry.tracer_provider)
    try:
        yield captured
    finally:
        sqlite.uninstrument()
        inst.uninstrument()
        set_audit_log(None)


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str
    run: Callable[[], Any]
    error_type: str | None = None
    corrections: int = 0


def _invoke(app: Any, state: dict[str, Any]) -> None:
    # the app's exception is the app's: the outcome must still be right
    with contextlib.suppress(Exception):
        app.invoke(state, config=CONFIG)


def _ainvoke(app: Any, state: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        asyncio.run(app.ainvoke(state, config=CONFIG))


def _pipe(*sqls: str, **kw: Any) -> Callable[[], None]:
    def run() -> None:
        model = pipeline.GenericFakeChatModel(messages=pipeline.replies(*sqls))
        app = pipeline.build_pipeline(pipeline.make_db(), model, **kw)
        (_ainvoke if kw.get("is_async") else _invoke)(app, {"question": "How many cancelled orders?"})

    return run


def _agent(sql: str, **kw: Any) -> Callable[[], None]:
    def run() -> None:
        app = sql_agent.build(sql_agent.make_db(), sql_agent.script(sql, **kw))
        _invoke(app, sql_agent.question())

    return run


def _broken_llm(is_async: bool) -> Callable[[], None]:
    def run() -> None:
        model = pipeline.BrokenModel(messages=pipeline.replies())
        app = pipeline.build_pipeline(pipeline.make_db(), model, is_async=is_async)
        (_ainvoke if is_async else _invoke)(app, {"question": "q"})

    return run


def _explicit_named() -> None:
    """The explicit API with an app-named outcome (`set_outcome`) wins over the derived one."""
    model = pipeline.GenericFakeChatModel(messages=pipeline.replies(GOOD))
    app = pipeline.build_pipeline(pipeline.make_db(), model)
    with workflow():
        app.invoke({"question": "q"}, config=CONFIG)
        set_outcome("empty_result")  # e.g. the app judged the answer empty


# Python 3.10: the callbacks of an async chat model do not run in the graph run's context (asyncio tasks
# take a context only from 3.11 on), so the failure reaches us only as the exception that ends the run:
# `error`, not `llm_error` (README, "Known limits").
ASYNC_CALLBACK_CONTEXT = sys.version_info >= (3, 11)

CORPUS = [
    Case("agent answered", "answered", _agent(GOOD)),
    Case("agent empty", "empty_result", _agent(NONE)),
    Case("agent validator recovered", "answered", _agent(GOOD, bad_first=True), corrections=1),
    Case("agent sql error raised", "sql_error", _agent(BAD_COLUMN), "sqlite3.OperationalError"),
    Case("pipeline answered", "answered", _pipe(GOOD)),
    Case("pipeline empty", "empty_result", _pipe(NONE)),
    Case("pipeline rejected once then answered", "answered", _pipe("DROP TABLE orders", GOOD), corrections=1),
    Case(
        "pipeline rejected three times",
        "validation_rejected",
        _pipe("DROP TABLE orders", "SELEC x", "DELETE FROM orders"),
        "not_read_only",
    ),
    Case("pipeline sql error caught", "sql_error", _pipe(BAD_COLUMN), "sqlite3.OperationalError"),
    Case(
        "pipeline sql error raised",
        "sql_error",
        _pipe(BAD_COLUMN, catch_db_errors=False),
        "sqlite3.OperationalError",
    ),
    Case("pipeline llm error", "llm_error", _broken_llm(False), "ConnectionError"),
    Case("pipeline app-named", "empty_result", _pipe(GOOD, name_outcome="empty_result")),
    Case("explicit api set_outcome", "empty_result", _explicit_named),
    Case("async answered", "answered", _pipe(GOOD, is_async=True)),
    Case("async empty", "empty_result", _pipe(NONE, is_async=True)),
    Case("async timeout", "timeout", _pipe(GOOD, is_async=True, hang_in_execute=True), "TimeoutError"),
    Case(
        "async llm error",
        "llm_error" if ASYNC_CALLBACK_CONTEXT else "error",
        _broken_llm(True),
        "ConnectionError",
    ),
    Case(
        "async rejected",
        "validation_rejected",
        _pipe("DROP a", "DROP b", "DROP c", is_async=True),
        "not_read_only",
    ),
]


def _workflow_spans(captured: Any) -> list[Any]:
    return sorted(
        (s for s in captured.spans() if s.name == "invoke_workflow nl2sql"), key=lambda s: s.start_time
    )


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_each_run_is_classified(zero_code, case: Case) -> None:
    case.run()
    (span,) = _workflow_spans(zero_code)
    assert span.attributes["nl2sql.outcome"] == case.outcome
    assert span.attributes["nl2sql.correction_attempts"] == case.corrections
    is_error = case.outcome not in ("answered", "empty_result")
    assert (span.status.status_code == StatusCode.ERROR) is is_error
    assert span.attributes.get("error.type") == case.error_type
    (request,) = zero_code.points("nl2sql.request.duration")
    assert request.attributes.get("nl2sql.outcome") == case.outcome
    assert request.attributes.get("error.type") == case.error_type


def test_seeded_corpus_counts_equal_the_truth(zero_code, tmp_path: Path) -> None:
    rng = random.Random(16)
    runs = [rng.choice(CORPUS) for _ in range(40)]
    for case in runs:
        case.run()
    truth = Counter(c.outcome for c in runs)
    counted = Counter()
    for point in zero_code.points("nl2sql.requests"):
        assert point.attributes["tenant.id"] == "acme"
        counted[point.attributes["nl2sql.outcome"]] += point.value
    assert counted == truth
    assert Counter(s.attributes["nl2sql.outcome"] for s in _workflow_spans(zero_code)) == truth
    # one audit `request` record per request, with the workflow span's ids
    audit_log = get_audit_log()
    assert audit_log is not None
    assert audit_log.flush(30)
    records = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    requests = [r for r in records if r["kind"] == "request"]
    assert Counter(r["outcome"] for r in requests) == truth
    spans = {(f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in _workflow_spans(zero_code)}
    assert {(r["trace_id"], r["span_id"]) for r in requests} == spans
    assert {r["tenant_id"] for r in requests} == {"acme"}


def test_rows_and_status_code_on_the_spans(zero_code) -> None:
    _pipe(BAD_COLUMN)()
    failed = next(
        s for s in zero_code.spans() if s.name == "SELECT" and s.status.status_code == StatusCode.ERROR
    )
    assert failed.attributes["db.response.status_code"] == "sqlite3.OperationalError"
    zero_code.spans_exporter.clear()
    _pipe("SELECT id FROM orders")()
    execute = next(s for s in zero_code.spans() if s.name == "node execute")
    assert execute.attributes["db.response.returned_rows"] == 2


def test_request_finished_log_record(zero_code, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="nl2sql_observability.requests")
    _pipe(BAD_COLUMN)()
    (record,) = [r for r in caplog.records if r.name == "nl2sql_observability.requests"]
    assert record.getMessage() == "request finished"
    assert record.levelname == "WARNING"
    assert vars(record)["nl2sql.outcome"] == "sql_error"
    assert vars(record)["error.type"] == "sqlite3.OperationalError"
    span = _workflow_spans(zero_code)[0]
    assert getattr(record, "otelSpanID", None) in (None, "0", f"{span.context.span_id:016x}")
