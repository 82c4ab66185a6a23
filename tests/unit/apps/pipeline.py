"""A plain NL2SQL pipeline with a validator loop, sync or async. Like `sql_agent`, it imports nothing of
nl2sql_observability: generate_sql -> validate_sql (retry up to `max_tries`) -> execute -> END. The app
catches database errors and apologises, as real apps do."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from typing import Any, Literal, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    sql: str
    tries: int
    validation_error: str | None
    answer: str
    nl2sql_outcome: str


class BrokenModel(GenericFakeChatModel):
    """A chat model whose provider fails (e.g. a 500 or a rate limit)."""

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("provider unavailable")


def replies(*sqls: str) -> Iterator[BaseMessage]:
    for sql in sqls:
        yield AIMessage(sql, usage_metadata={"input_tokens": 20, "output_tokens": 5, "total_tokens": 25})


def build_pipeline(
    conn: Any,
    model: GenericFakeChatModel,
    *,
    max_tries: int = 3,
    catch_db_errors: bool = True,
    is_async: bool = False,
    hang_in_execute: bool = False,
    name_outcome: str | None = None,
) -> Any:
    def generate_sql(state: State) -> dict[str, Any]:
        reply = model.invoke([HumanMessage(state["question"])])
        return {"sql": str(reply.content), "tries": state.get("tries", 0) + 1}

    def validate_sql(state: State) -> dict[str, Any]:
        sql = state["sql"].strip()
        if not sql.upper().startswith("SELECT"):
            return {"validation_error": "not_read_only"}
        if "SELEC " in sql.upper() or sql.count("(") != sql.count(")"):
            return {"validation_error": "syntax_error"}
        return {"validation_error": None}

    def run(sql: str) -> dict[str, Any]:
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
        except Exception as exc:  # the app's own handling of database errors
            if not catch_db_errors or not type(exc).__module__.startswith(("sqlite3", "psycopg")):
                raise
            return {"answer": "Sorry, I could not answer that."}
        update: dict[str, Any] = {"answer": f"{len(rows)} rows" if rows else "Nothing found."}
        if name_outcome is not None:
            update["nl2sql_outcome"] = name_outcome
        return update

    def execute(state: State) -> dict[str, Any]:
        return run(state["sql"])

    async def aexecute(state: State) -> dict[str, Any]:
        if hang_in_execute:  # the app's own deadline for the database
            await asyncio.wait_for(asyncio.Event().wait(), 0.01)
        return run(state["sql"])

    async def agenerate_sql(state: State) -> dict[str, Any]:
        reply = await model.ainvoke([HumanMessage(state["question"])])
        return {"sql": str(reply.content), "tries": state.get("tries", 0) + 1}

    def after_validation(state: State) -> Literal["execute", "generate_sql", "__end__"]:
        if not state.get("validation_error"):
            return "execute"
        return "generate_sql" if state.get("tries", 0) < max_tries else END

    g = StateGraph(State)
    g.add_node("generate_sql", agenerate_sql if is_async else generate_sql)
    g.add_node("validate_sql", validate_sql)
    g.add_node("execute", aexecute if is_async else execute)
    g.add_edge(START, "generate_sql")
    g.add_edge("generate_sql", "validate_sql")
    g.add_conditional_edges("validate_sql", after_validation)
    g.add_edge("execute", END)
    return g.compile()


def make_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, amount REAL)")
    conn.executemany(
        "INSERT INTO orders (status, amount) VALUES (?, ?)", [("open", 10.0), ("cancelled", 5.5)]
    )
    return conn
