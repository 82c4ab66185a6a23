"""An ordinary LangGraph SQL agent in the style of LangGraph's SQL-agent tutorial. It imports nothing
of nl2sql_observability: the zero-code tests observe it from the outside.

Nodes: list_tables -> call_get_schema -> get_schema (ToolNode) -> generate_query -> check_query ->
run_query (ToolNode) -> generate_query ... -> END. The chat model is scripted and reports usage_metadata.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

MODEL = "gpt-4o-mini"
SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"


def make_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, amount REAL)")
    conn.executemany(
        "INSERT INTO orders (status, amount) VALUES (?, ?)", [("open", 10.0), ("cancelled", 5.5)]
    )
    return conn


class ScriptedModel(GenericFakeChatModel):
    """A fake chat model that answers from a script and reports usage like a real provider."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(ls_provider="openai", ls_model_name=MODEL)
        return params


def _usage(i: int, o: int) -> dict[str, int]:
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}


def script(sql: str, bad_first: bool = False) -> Iterator[BaseMessage]:
    """The model's replies for one question, in order."""
    yield AIMessage(
        "",
        tool_calls=[{"name": "get_schema", "args": {"table_names": "orders"}, "id": "s1"}],
        usage_metadata=_usage(30, 8),
    )
    if bad_first:
        yield AIMessage(
            "",
            tool_calls=[{"name": "run_query", "args": {"query": "SELEC nonsense"}, "id": "q0"}],
            usage_metadata=_usage(60, 12),
        )
    yield AIMessage(
        "",
        tool_calls=[{"name": "run_query", "args": {"query": sql}, "id": "q1"}],
        usage_metadata=_usage(50, 10),
    )
    yield AIMessage("There are 1 cancelled orders.", usage_metadata=_usage(70, 9))


def build(conn: sqlite3.Connection, replies: Iterator[BaseMessage], *, fail_in: str | None = None) -> Any:
    @tool
    def get_schema(table_names: str) -> str:
        """Schema of the tables."""
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table_names,)).fetchall()
        return "\n".join(r[0] for r in rows)

    @tool
    def run_query(query: str) -> str:
        """Run a SQL query."""
        if fail_in == "tool":
            raise RuntimeError("tool exploded")
        cur = conn.cursor()
        return str(cur.execute(query).fetchall())

    model = ScriptedModel(messages=replies)

    def list_tables(state: MessagesState) -> dict[str, Any]:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {"messages": [AIMessage(f"Available tables: {', '.join(names)}")]}

    def call_get_schema(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def generate_query(state: MessagesState) -> dict[str, Any]:
        if fail_in == "node":
            raise ValueError("node exploded")
        return {"messages": [model.invoke(state["messages"])]}

    def check_query(state: MessagesState) -> dict[str, Any]:
        call = state["messages"][-1].tool_calls[0]
        if "SELEC " in call["args"]["query"]:
            return {"messages": [AIMessage("syntax error, try again")], "validation_error": "syntax_error"}
        return {"messages": [AIMessage("", tool_calls=[call])]}

    def should_continue(state: MessagesState) -> Literal["check_query", "__end__"]:
        return "check_query" if state["messages"][-1].tool_calls else END

    def after_check(state: MessagesState) -> Literal["run_query", "generate_query"]:
        return "run_query" if state["messages"][-1].tool_calls else "generate_query"

    class State(MessagesState):
        validation_error: str | None

    g = StateGraph(State)
    g.add_node(list_tables)
    g.add_node(call_get_schema)
    g.add_node("get_schema", ToolNode([get_schema]))
    g.add_node(generate_query)
    g.add_node(check_query)
    g.add_node("run_query", ToolNode([run_query], handle_tool_errors=False))
    g.add_edge(START, "list_tables")
    g.add_edge("list_tables", "call_get_schema")
    g.add_edge("call_get_schema", "get_schema")
    g.add_edge("get_schema", "generate_query")
    g.add_conditional_edges("generate_query", should_continue)
    g.add_conditional_edges("check_query", after_check)
    g.add_edge("run_query", "generate_query")
    return g.compile()


def question(text: str = "How many orders were cancelled?") -> dict[str, Any]:
    return {"messages": [HumanMessage(text)]}
