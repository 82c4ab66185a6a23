"""The zero-code instrumentor on an app that imports nothing of this package (tests/unit/apps)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from apps.sql_agent import MODEL, build, make_db, question, script
from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph
from nl2sql_observability.audit import AuditLog, AuditSettings, get_audit_log, set_audit_log
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor, active_handler
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.trace import SpanKind, StatusCode

GOOD_SQL = "SELECT count(*) FROM orders WHERE status = 'cancelled'"
CONFIG = {"configurable": {"thread_id": "th-1", "tenant_id": "acme", "user_id": "u-1"}}


@pytest.fixture
def zero_code(captured):
    inst = Nl2sqlInstrumentor()
    inst.instrument(settings=InstrumentorSettings())
    sqlite = SQLite3Instrumentor()
    sqlite.instrument(tracer_provider=captured.telemetry.tracer_provider)
    try:
        yield captured
    finally:
        sqlite.uninstrument()
        inst.uninstrument()


@pytest.fixture
def audit_file(tmp_path: Path):
    path = tmp_path / "events.log"
    set_audit_log(AuditLog(AuditSettings(path=path)))
    try:
        yield path
    finally:
        set_audit_log(None)


def events(path: Path, kind: str = "llm_call") -> list[dict[str, Any]]:
    """The audit events of this kind (`llm_call`, `request`)."""
    audit_log = get_audit_log()
    assert audit_log is not None
    assert audit_log.flush(30)  # the background writer stored them
    found = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in found if e["kind"] == kind]


def children(spans, parent) -> list[str]:
    return [
        s.name
        for s in sorted(spans, key=lambda s: s.start_time)
        if s.parent and s.parent.span_id == parent.context.span_id
    ]


def point_values(captured, name: str) -> dict[frozenset, Any]:
    return {frozenset(p.attributes.items()): p for p in captured.points(name)}


def test_sql_agent_gets_workflow_node_chat_and_db_spans(zero_code):
    conn = make_db()
    app = build(conn, script(GOOD_SQL))
    app.invoke(question(), config=CONFIG)
    spans = zero_code.spans()
    root = zero_code.span("invoke_workflow nl2sql")
    assert root.parent is None
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert children(spans, root) == [
        "node list_tables",
        "node call_get_schema",
        "node get_schema",
        "node generate_query",
        "node check_query",
        "node run_query",
        "node generate_query",
    ]
    assert {s.context.trace_id for s in spans if s.name != "CREATE" and s.name != "INSERT"} == {
        root.context.trace_id
    }
    for span in spans:
        if span.name.startswith(("invoke_workflow", "node", "chat", "SELECT")):
            assert span.attributes["tenant.id"] == "acme"
            assert span.attributes["user.id"] == "u-1"
            assert span.attributes["session.id"] == "th-1"
    # routers (should_continue, after_check) and LangGraph's bookkeeping are no nodes
    names = {s.name for s in spans}
    assert not any("should_continue" in n or "after_check" in n or "__" in n for n in names)
    run_query = next(s for s in spans if s.name == "node run_query")
    db = [s for s in spans if s.parent and s.parent.span_id == run_query.context.span_id]
    assert [s.attributes["db.statement"] for s in db] == [GOOD_SQL]  # a cursor's execute
    list_tables = next(s for s in spans if s.name == "node list_tables")
    assert children(spans, list_tables) == ["SELECT"]  # connection.execute() is traced too
    chats = [s for s in spans if s.name == f"chat {MODEL}"]
    assert len(chats) == 3
    for chat in chats:
        assert chat.kind == SpanKind.CLIENT
        parent = next(s for s in spans if s.context.span_id == chat.parent.span_id)
        assert parent.name == f"node {chat.attributes['nl2sql.node.name']}"
        assert chat.attributes["gen_ai.provider.name"] == "openai"
        assert chat.attributes["gen_ai.request.model"] == MODEL
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert active_handler().tracked() == 0


def test_metrics_carry_tenant_and_node(zero_code):
    app = build(make_db(), script(GOOD_SQL))
    app.invoke(question(), config=CONFIG)
    nodes = Counter()
    for attrs, point in point_values(zero_code, "nl2sql.node.duration").items():
        d = dict(attrs)
        assert d["tenant.id"] == "acme"
        assert "user.id" not in d
        assert "session.id" not in d
        nodes[d["nl2sql.node.name"]] += point.count
    assert nodes == {
        "list_tables": 1,
        "call_get_schema": 1,
        "get_schema": 1,
        "generate_query": 2,
        "check_query": 1,
        "run_query": 1,
    }
    (request,) = zero_code.points("nl2sql.request.duration")
    assert dict(request.attributes) == {"tenant.id": "acme", "nl2sql.outcome": "answered"}
    assert request.count == 1
    tokens = {}
    for p in zero_code.points("nl2sql.llm.tokens"):
        d = dict(p.attributes)
        assert d["tenant.id"] == "acme"
        assert d["gen_ai.request.model"] == MODEL
        tokens[(d["nl2sql.node.name"], d["gen_ai.token.type"])] = p.value
    # script(): get_schema call 30/8 from call_get_schema; 50/10 and 70/9 from generate_query
    assert tokens == {
        ("call_get_schema", "input"): 30,
        ("call_get_schema", "output"): 8,
        ("generate_query", "input"): 120,
        ("generate_query", "output"): 19,
    }
    assert {
        dict(p.attributes)["gen_ai.token.type"] for p in zero_code.points("gen_ai.client.token.usage")
    } == {"input", "output"}
    assert sum(p.count for p in zero_code.points("gen_ai.client.operation.duration")) == 3


def test_validator_node_counts_outcomes(zero_code):
    app = build(make_db(), script(GOOD_SQL, bad_first=True))
    app.invoke(question(), config=CONFIG)
    outcomes = {
        (dict(p.attributes)["nl2sql.validation.outcome"], dict(p.attributes).get("error.type")): p.value
        for p in zero_code.points("nl2sql.sql.validations")
    }
    assert outcomes == {("failed", "syntax_error"): 1, ("passed", None): 1}


def test_audit_events_hold_node_tenant_and_the_generated_sql(zero_code, audit_file):
    app = build(make_db(), script(GOOD_SQL))
    app.invoke(question(), config=CONFIG)
    found = events(audit_file)
    assert [e["node"] for e in found] == ["call_get_schema", "generate_query", "generate_query"]
    chats = {s.context.span_id: s for s in zero_code.spans() if s.name.startswith("chat ")}
    for event in found:
        assert (event["tenant_id"], event["user_id"], event["session_id"]) == ("acme", "u-1", "th-1")
        assert event["model"] == MODEL
        span = chats[int(event["span_id"], 16)]
        assert int(event["trace_id"], 16) == span.context.trace_id
    sql_call = found[1]
    assert "run_query" in sql_call["response_text"]
    assert GOOD_SQL in sql_call["response_text"]
    assert found[2]["response_text"].startswith("There are 1 cancelled orders.")
    assert "How many orders were cancelled?" in found[0]["prompt_text"]


def test_exception_in_node_and_in_tool(zero_code):
    for where, node_name in (("node", "generate_query"), ("tool", "run_query")):
        app = build(make_db(), script(GOOD_SQL), fail_in=where)
        with pytest.raises((ValueError, RuntimeError), match=f"{where} exploded"):
            app.invoke(question(), config=CONFIG)
        spans = zero_code.spans()
        failed = [
            s for s in spans if s.name == f"node {node_name}" and s.status.status_code == StatusCode.ERROR
        ]
        assert len(failed) == 1
        assert failed[0].attributes["error.type"] in ("ValueError", "RuntimeError")
        roots = [
            s
            for s in spans
            if s.name == "invoke_workflow nl2sql" and s.status.status_code == StatusCode.ERROR
        ]
        assert roots, "the workflow span records the failure too"
        zero_code.spans_exporter.clear()
    errors = [dict(p.attributes).get("error.type") for p in zero_code.points("nl2sql.node.duration")]
    assert "ValueError" in errors
    assert "RuntimeError" in errors
    assert active_handler().tracked() == 0


def _subgraph_app():
    inner = StateGraph(MessagesState)
    inner.add_node("inner_step", lambda s: {"messages": [AIMessage("inner")]})
    inner.add_edge(START, "inner_step")
    inner_app = inner.compile()

    nested = StateGraph(MessagesState)
    nested.add_node("nested_step", lambda s: {"messages": [AIMessage("nested")]})
    nested.add_edge(START, "nested_step")
    nested_app = nested.compile()

    def calls_a_graph(state):
        return nested_app.invoke(state)  # a graph called from inside a node, without passing config

    outer = StateGraph(MessagesState)
    outer.add_node("sub", inner_app)
    outer.add_node(calls_a_graph)
    outer.add_edge(START, "sub")
    outer.add_edge("sub", "calls_a_graph")
    return outer.compile()


def test_subgraph_and_nested_graph_nodes_nest_under_their_node(zero_code):
    _subgraph_app().invoke(question(), config=CONFIG)
    spans = zero_code.spans()
    assert len([s for s in spans if s.name == "invoke_workflow nl2sql"]) == 1
    sub = zero_code.span("node sub")
    assert children(spans, sub) == ["node inner_step"]
    caller = zero_code.span("node calls_a_graph")
    assert children(spans, caller) == ["node nested_step"]
    for name in ("node inner_step", "node nested_step"):
        assert zero_code.span(name).attributes["tenant.id"] == "acme"


def test_astream_async_graph(zero_code):
    app = build(make_db(), script(GOOD_SQL))

    async def run():
        return [chunk async for chunk in app.astream(question(), config=CONFIG)]

    assert asyncio.run(run())
    root = zero_code.span("invoke_workflow nl2sql")
    nodes = [s for s in zero_code.spans() if s.name.startswith("node ")]
    assert len(nodes) == 7
    assert all(s.parent.span_id == root.context.span_id for s in nodes)
    assert active_handler().tracked() == 0


def test_stream_and_batch(zero_code):
    app = build(make_db(), script(GOOD_SQL))
    list(app.stream(question(), config=CONFIG, stream_mode="updates"))
    assert len([s for s in zero_code.spans() if s.name == "invoke_workflow nl2sql"]) == 1
    zero_code.spans_exporter.clear()
    apps = _subgraph_app()
    apps.batch(
        [question(), question()],
        config=[{"configurable": {"tenant_id": "t-one"}}, {"configurable": {"tenant_id": "t-two"}}],
    )
    roots = [s for s in zero_code.spans() if s.name == "invoke_workflow nl2sql"]
    assert sorted(s.attributes["tenant.id"] for s in roots) == ["t-one", "t-two"]


def _tenant_of_every_span(spans) -> dict[int, set[str]]:
    by_trace: dict[int, set[str]] = {}
    for s in spans:
        by_trace.setdefault(s.context.trace_id, set()).add(s.attributes.get("tenant.id"))
    return by_trace


def test_eight_threads_never_share_a_tenant(zero_code):
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            app = build(make_db(), script(GOOD_SQL))
            barrier.wait(timeout=30)
            app.invoke(
                question(), config={"configurable": {"tenant_id": f"tenant-{i}", "thread_id": f"th-{i}"}}
            )
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    spans = [s for s in zero_code.spans() if not s.name.startswith(("CREATE", "INSERT"))]
    by_trace = _tenant_of_every_span(spans)
    assert len(by_trace) == 8
    assert sorted(next(iter(v)) for v in by_trace.values()) == sorted(f"tenant-{i}" for i in range(8))
    assert all(len(v) == 1 for v in by_trace.values())
    per_tenant = Counter(dict(p.attributes)["tenant.id"] for p in zero_code.points("nl2sql.request.duration"))
    assert per_tenant == {f"tenant-{i}": 1 for i in range(8)}


def test_fifty_asyncio_tasks_never_share_a_tenant(zero_code):
    async def one(i: int) -> None:
        app = build(make_db(), script(GOOD_SQL))
        await app.ainvoke(question(), config={"configurable": {"tenant_id": f"t{i}"}})

    async def run() -> None:
        await asyncio.gather(*(one(i) for i in range(50)))

    asyncio.run(run())
    spans = [s for s in zero_code.spans() if not s.name.startswith(("CREATE", "INSERT"))]
    by_trace = _tenant_of_every_span(spans)
    assert len(by_trace) == 50
    assert all(len(v) == 1 for v in by_trace.values())
    assert sorted(next(iter(v)) for v in by_trace.values()) == sorted(f"t{i}" for i in range(50))
    assert active_handler().tracked() == 0


def test_identity_from_state_and_enclosing_context_and_metadata(zero_code):
    from nl2sql_observability import UserContext, user_context

    class State(MessagesState):
        user_context: dict

    g = StateGraph(State)
    g.add_node("only", lambda s: {"messages": [AIMessage("x")]})
    g.add_edge(START, "only")
    app = g.compile()
    app.invoke({**question(), "user_context": {"tenant_id": "from-state", "user_id": "su"}})
    with user_context(UserContext(tenant_id="enclosing", session_id="s-9")):
        app.invoke({**question(), "user_context": {}})
    app.invoke({**question(), "user_context": {}}, config={"metadata": {"tenant_id": "from-meta"}})
    roots = sorted(
        (s for s in zero_code.spans() if s.name == "invoke_workflow nl2sql"), key=lambda s: s.start_time
    )
    assert [dict(s.attributes).get("tenant.id") for s in roots] == ["from-state", "enclosing", "from-meta"]
    assert roots[0].attributes["user.id"] == "su"
    assert roots[1].attributes["session.id"] == "s-9"


def test_invalid_tenant_is_dropped_with_one_warning(zero_code, caplog):
    app = build(make_db(), script(GOOD_SQL))
    bad = {"configurable": {"tenant_id": "ACME Corp; DROP TABLE", "thread_id": "th-1"}}
    with caplog.at_level(logging.WARNING, logger="nl2sql_observability.autoinstrument"):
        app.invoke(question(), config=bad)
        app = build(make_db(), script(GOOD_SQL))
        app.invoke(question(), config=bad)
    warnings = [r for r in caplog.records if "tenant_id" in r.getMessage()]
    assert len(warnings) == 1, "rate-limited: one warning for the same bad source"
    roots = [s for s in zero_code.spans() if s.name == "invoke_workflow nl2sql"]
    assert len(roots) == 2
    assert all("tenant.id" not in s.attributes and s.attributes["session.id"] == "th-1" for s in roots)
    assert all("tenant.id" not in dict(p.attributes) for p in zero_code.points("nl2sql.node.duration"))


def test_explicit_api_inside_is_not_counted_twice(zero_code, audit_file):
    from nl2sql_observability import node, record_validation, workflow
    from nl2sql_observability.langchain import TokenHandler

    @node("check_query")
    def checked(state):
        record_validation("failed", error_type="explicit_error")
        return {"messages": [AIMessage("no")]}

    g = StateGraph(MessagesState)
    g.add_node("check_query", checked)
    g.add_node("gen", lambda s: {"messages": [model.invoke(s["messages"])]})
    g.add_edge(START, "gen")
    g.add_edge("gen", "check_query")
    from apps.sql_agent import ScriptedModel

    model = ScriptedModel(
        messages=iter(
            [AIMessage("SELECT 1", usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2})]
        )
    )
    with workflow():
        g.compile().invoke(question(), config={**CONFIG, "callbacks": [TokenHandler()]})
    names = Counter(s.name for s in zero_code.spans())
    assert names["invoke_workflow nl2sql"] == 1
    assert names["node check_query"] == 1
    assert names[f"chat {MODEL}"] == 1
    validations = zero_code.points("nl2sql.sql.validations")
    assert [(dict(p.attributes)["nl2sql.validation.outcome"], p.value) for p in validations] == [
        ("failed", 1)
    ]
    assert len(events(audit_file)) == 1
    (req,) = zero_code.points("nl2sql.request.duration")
    assert req.count == 1


def test_uninstrument_stops_everything(captured):
    inst = Nl2sqlInstrumentor()
    inst.instrument(settings=InstrumentorSettings())
    inst.uninstrument()
    assert active_handler() is None
    build(make_db(), script(GOOD_SQL)).invoke(question(), config=CONFIG)
    assert captured.spans() == []


def test_nothing_of_a_run_outlives_it_in_the_callers_task_or_thread(zero_code):
    """LangChain delivers async chain ends in a shielded copy of the caller's context: the caller's own
    context must still be clean afterwards, so the next request is a trace of its own."""
    from nl2sql_observability.context import current_node, current_user_context
    from opentelemetry import trace

    def clean() -> bool:
        return (
            not trace.get_current_span().get_span_context().is_valid
            and current_node() is None
            and current_user_context() is None
        )

    async def twice() -> list[bool]:
        seen = []
        for _ in range(2):
            await build(make_db(), script(GOOD_SQL)).ainvoke(question(), config=CONFIG)
            seen.append(clean())
        async for _ in build(make_db(), script(GOOD_SQL)).astream(question(), config=CONFIG):
            pass
        seen.append(clean())
        return seen

    assert asyncio.run(twice()) == [True, True, True]
    for _ in range(2):
        build(make_db(), script(GOOD_SQL)).invoke(question(), config=CONFIG)
        assert clean()
    stream = build(make_db(), script(GOOD_SQL)).stream(question(), config=CONFIG)
    next(stream)
    stream.close()  # abandoned after the first chunk
    assert clean()
    roots = [s for s in zero_code.spans() if s.name == "invoke_workflow nl2sql"]
    assert len(roots) == 6
    assert all(s.parent is None for s in roots)
    assert len({s.context.trace_id for s in roots}) == 6
