"""The demo's LangGraph graph: lookup_schema -> generate_sql -> validate_sql -> execute_sql -> answer.

It is written as our users write their apps: no line of it knows about telemetry. Run under
`opentelemetry-instrument`, the zero-code instrumentor turns each run into the workflow, node and chat
spans, the metrics and the audit events; `validate_sql` is a validator node and reports a rejected
query with the documented `error_type` marker in its state update. The only OpenTelemetry call is the
one any app makes to tell its caller the trace id. A failed validation ends the request unexecuted.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, cast

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from opentelemetry import trace
from pydantic import Field

from nl2sql_observability.context import GraphState
from nl2sql_observability.demo.db import schema_columns
from nl2sql_observability.demo.llm import ANSWER_TASK, SQL_TASK, SimulatedChatModel
from nl2sql_observability.demo.validate import validate_sql

__all__ = ["NODE_NAMES", "DemoState", "build_graph"]

NODE_NAMES = ("lookup_schema", "generate_sql", "validate_sql", "execute_sql", "answer")
MAX_ROWS = 20
QUERY_DEADLINE_S = 1.0  # the app's own statement deadline (scaled with the demo's time scale)
_log = logging.getLogger("nl2sql_observability.demo")


def _merge(left: dict[str, float], right: dict[str, float]) -> dict[str, float]:
    return {**left, **right}


class DemoState(GraphState):
    """Graph state: the typed user context (from `GraphState`) plus the request's data."""

    index: int
    question: str
    schema_text: str = ""
    sql: str = ""
    error_type: str | None = None
    error_message: str | None = None
    rows: list[list[Any]] = Field(default_factory=list)
    db_error: str | None = None
    answer: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    timings_ms: Annotated[dict[str, float], _merge] = Field(default_factory=dict)


NodeFn = Callable[[DemoState, RunnableConfig], Awaitable[dict[str, Any]]]


def _timed(name: str, fn: NodeFn) -> NodeFn:
    """Measure the node locally, for the demo's own summary (the app's code, not telemetry)."""

    async def timed(state: DemoState, config: RunnableConfig) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            update = await fn(state, config)
        finally:
            elapsed_ms = (time.perf_counter() - start) * 1000.0
        return {**update, "timings_ms": {name: elapsed_ms}}

    timed.__name__ = name
    return timed


def _trace_id_sink(config: RunnableConfig) -> Callable[[str], None] | None:
    sink = (config.get("configurable") or {}).get("report_trace_id")
    return sink if callable(sink) else None


def _report_usage(config: RunnableConfig, node: str, usage: dict[str, Any]) -> None:
    """Tell the caller what an LLM call of `node` used (the demo's own tally for its summary)."""
    sink = (config.get("configurable") or {}).get("report_usage")
    if callable(sink):
        sink(node, int(usage["input_tokens"]), int(usage["output_tokens"]))


def _llm(config: RunnableConfig) -> SimulatedChatModel:
    llm = (config.get("configurable") or {}).get("llm")
    if not isinstance(llm, SimulatedChatModel):
        raise TypeError("the run config must carry the request's model as configurable['llm']")
    return llm


def _rows_text(rows: list[list[Any]]) -> str:
    shown = "; ".join(", ".join(str(v) for v in row) for row in rows[:5])
    more = f" (+{len(rows) - 5} more)" if len(rows) > 5 else ""
    return f"{shown}{more}" if rows else ""


def build_graph(db_path: Path) -> Any:
    """Compile the graph over the sample database at `db_path` (opened read-only)."""
    schema = schema_columns()
    uri = f"file:{db_path}?mode=ro"

    def connect() -> sqlite3.Connection:
        # module attribute lookup at call time, so the sqlite3 instrumentation sees the connection
        return sqlite3.connect(uri, uri=True)

    async def lookup_schema(state: DemoState, config: RunnableConfig) -> dict[str, Any]:
        report = _trace_id_sink(config)
        if report is not None:  # what a web app puts in a response header, so users can quote it
            report(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        _log.info("question received", extra={"question": state.question})
        conn = connect()
        try:
            ddl = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name != 'meta' ORDER BY name"
            ).fetchall()
        finally:
            conn.close()
        return {"schema_text": "\n".join(row[0] for row in ddl)}

    async def generate_sql(state: DemoState, config: RunnableConfig) -> dict[str, Any]:
        reply = await _llm(config).ainvoke(
            [SystemMessage(f"{SQL_TASK}\nSchema:\n{state.schema_text}"), HumanMessage(state.question)],
            config=config,
        )
        usage = reply.usage_metadata or {"input_tokens": 0, "output_tokens": 0}
        _report_usage(config, "generate_sql", dict(usage))
        return {
            "sql": reply.text.strip(),
            "input_tokens": state.input_tokens + usage["input_tokens"],
            "output_tokens": state.output_tokens + usage["output_tokens"],
        }

    async def validate(state: DemoState, config: RunnableConfig) -> dict[str, Any]:
        result = validate_sql(state.sql, schema)
        if result.ok:
            return {}
        error_type = result.error_type or "invalid_sql"
        _log.warning("sql validation failed", extra={"error_type": error_type, "sql": state.sql})
        return {"error_type": error_type, "error_message": result.message}

    async def execute_sql(state: DemoState, config: RunnableConfig) -> dict[str, Any]:
        conn = connect()
        scale = float((config.get("configurable") or {}).get("time_scale", 1.0))
        deadline = time.monotonic() + max(0.05, QUERY_DEADLINE_S * scale)
        # past the deadline SQLite interrupts the statement ("interrupted"), as a driver timeout would
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cur = conn.cursor()
            cur.execute(state.sql)
            rows = cur.fetchmany(MAX_ROWS)
        except sqlite3.Error as exc:  # the app apologises instead of failing the request
            _log.warning("query failed", extra={"db_error": str(exc), "sql": state.sql})
            return {"db_error": str(exc)}
        finally:
            conn.close()
        return {"rows": [list(r) for r in rows]}

    async def answer(state: DemoState, config: RunnableConfig) -> dict[str, Any]:
        if state.db_error is not None:
            return {"answer": f"Sorry, the database could not answer that ({state.db_error})."}
        prompt = f"Question: {state.question}\nSQL: {state.sql}\nRows: {_rows_text(state.rows)}"
        reply = await _llm(config).ainvoke([SystemMessage(ANSWER_TASK), HumanMessage(prompt)], config=config)
        usage = reply.usage_metadata or {"input_tokens": 0, "output_tokens": 0}
        _report_usage(config, "answer", dict(usage))
        return {
            "answer": reply.text.strip(),
            "input_tokens": state.input_tokens + usage["input_tokens"],
            "output_tokens": state.output_tokens + usage["output_tokens"],
        }

    def after_validation(state: DemoState) -> str:
        return END if state.error_type is not None else "execute_sql"

    graph = StateGraph(DemoState)
    for name, fn in (
        ("lookup_schema", lookup_schema),
        ("generate_sql", generate_sql),
        ("validate_sql", validate),
        ("execute_sql", execute_sql),
        ("answer", answer),
    ):
        graph.add_node(name, cast(Any, _timed(name, fn)))
    graph.add_edge(START, "lookup_schema")
    graph.add_edge("lookup_schema", "generate_sql")
    graph.add_edge("generate_sql", "validate_sql")
    graph.add_conditional_edges("validate_sql", after_validation, ["execute_sql", END])
    graph.add_edge("execute_sql", "answer")
    graph.add_edge("answer", END)
    return graph.compile()
