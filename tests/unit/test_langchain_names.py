"""Every LangChain/LangGraph name the zero-code instrumentor relies on is where we look for it (several
are private: `_configure_hooks`, `var_child_runnable_config`, `Pregel.stream`); LangGraph's control
flow (`interrupt()`, `Command(graph=Command.PARENT)`) is no error on our spans; and a moved name is
one warning, not a silent switch-off."""

from __future__ import annotations

import logging
import operator
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor, active_handler, hooks
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from opentelemetry.trace import StatusCode
from typing_extensions import TypedDict


def test_every_name_we_hook_is_there() -> None:
    assert hooks.missing_names(hooks.LANGCHAIN_NAMES) == []
    assert hooks.missing_names(hooks.LANGGRAPH_NAMES) == []
    assert Command.PARENT == "__parent__"
    import langgraph.errors

    assert {name for name in hooks.CONTROL_FLOW if hasattr(langgraph.errors, name)} >= {
        "GraphBubbleUp",
        "GraphInterrupt",
        "ParentCommand",
    }


@pytest.fixture
def instrumented(captured):
    inst = Nl2sqlInstrumentor()
    inst.instrument(settings=InstrumentorSettings())
    try:
        yield captured
    finally:
        inst.uninstrument()


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


CONFIG: dict[str, Any] = {"configurable": {"tenant_id": "acme", "thread_id": "t-1"}}


def _statuses(captured) -> dict[str, StatusCode]:
    return {s.name: s.status.status_code for s in captured.spans()}


def test_interrupt_is_control_flow_not_an_error(instrumented) -> None:
    def ask(state: State) -> dict[str, list[str]]:
        answer = interrupt("approve?")
        return {"steps": [f"ask:{answer}"]}

    graph = (
        StateGraph(State).add_node("ask", ask).add_edge(START, "ask").compile(checkpointer=InMemorySaver())
    )
    graph.invoke({"steps": []}, config=CONFIG)  # stops at interrupt()
    result = graph.invoke(Command(resume="yes"), config=CONFIG)
    assert result["steps"] == ["ask:yes"]
    statuses = _statuses(instrumented)
    assert statuses["node ask"] == StatusCode.UNSET
    assert statuses["invoke_workflow nl2sql"] == StatusCode.UNSET
    assert not [s for s in instrumented.spans() if "error.type" in (s.attributes or {})]
    assert active_handler().tracked() == 0


def test_command_to_the_parent_graph_is_control_flow_not_an_error(instrumented) -> None:
    def hand_back(state: State) -> Command[Any]:
        return Command(graph=Command.PARENT, goto="finish", update={"steps": ["child"]})

    child = StateGraph(State).add_node("hand_back", hand_back).add_edge(START, "hand_back").compile()

    def finish(state: State) -> dict[str, list[str]]:
        return {"steps": ["finish"]}

    parent = (
        StateGraph(State)
        .add_node("child", child, destinations=("finish",))
        .add_node("finish", finish)
        .add_edge(START, "child")
        .compile()
    )
    result = parent.invoke({"steps": []}, config=CONFIG)
    assert result["steps"][-1] == "finish"
    statuses = _statuses(instrumented)
    assert statuses["node finish"] == StatusCode.UNSET
    assert statuses["invoke_workflow nl2sql"] == StatusCode.UNSET
    assert not [s for s in instrumented.spans() if "error.type" in (s.attributes or {})]


def test_a_moved_name_is_one_warning(monkeypatch, caplog) -> None:
    moved = (*hooks.LANGCHAIN_NAMES, ("langchain_core.tracers.context", "_renamed_configure_hooks"))
    monkeypatch.setattr(hooks, "LANGCHAIN_NAMES", moved)
    inst = Nl2sqlInstrumentor()
    with caplog.at_level(logging.WARNING, logger="nl2sql_observability.autoinstrument"):
        inst.instrument(settings=InstrumentorSettings())
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "langchain_core.tracers.context._renamed_configure_hooks" in warnings[0]
        assert active_handler() is None  # not hooked half-way
    finally:
        inst.uninstrument()


@pytest.mark.parametrize("opt_in", [False, True])
def test_gc_freeze_only_when_opted_in(captured, opt_in: bool) -> None:
    import gc

    graph = StateGraph(State).add_node("a", lambda s: {"steps": ["a"]}).add_edge(START, "a").compile()
    inst = Nl2sqlInstrumentor()
    gc.unfreeze()
    inst.instrument(settings=InstrumentorSettings(gc_freeze=opt_in))
    try:
        graph.invoke({"steps": []}, config=CONFIG)
        assert (gc.get_freeze_count() > 0) is opt_in
    finally:
        inst.uninstrument()
        gc.unfreeze()
