"""The instrumentation API: span tree, names, kinds, attributes, status; exceptions; async."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from nl2sql_observability.context import UserContext, current_node, user_context
from nl2sql_observability.demo.llm import SQL_TASK, SimulatedChatModel
from nl2sql_observability.instrumentation import fail_current_step, llm_call, node, workflow
from nl2sql_observability.langchain import TokenHandler
from opentelemetry.trace import SpanKind, StatusCode

CTX = UserContext(tenant_id="acme", user_id="u-1", session_id="s-1")


class BoomError(RuntimeError):
    pass


class DomainError(Exception):
    error_type = "unknown_column"


def _packaged_cost(model: str, usage) -> float:
    """USD for this usage at the package's default price (read from the price file, not the code)."""
    import json
    from pathlib import Path

    import nl2sql_observability

    prices = Path(nl2sql_observability.__file__).with_name("prices.json")
    price = json.loads(prices.read_text(encoding="utf-8"))["models"][model]
    return (usage["input_tokens"] * price["input"] + usage["output_tokens"] * price["output"]) / 1e6


def test_workflow_node_chat_tree_via_langchain_handler(captured, audit_calls):
    model = SimulatedChatModel(time_scale=0)
    with user_context(CTX), workflow() as wf, node("generate_sql"):
        reply = model.invoke(
            [SystemMessage(SQL_TASK), HumanMessage("How many orders were cancelled?")],
            config={"callbacks": [TokenHandler()]},
        )
    assert "cancelled" in reply.text
    root = captured.span("invoke_workflow nl2sql")
    gen = captured.span("node generate_sql")
    chat = captured.span("chat nl2sql-sim-1")
    assert root.parent is None
    assert gen.parent is not None
    assert gen.parent.span_id == root.context.span_id
    assert chat.parent is not None
    assert chat.parent.span_id == gen.context.span_id
    assert {s.context.trace_id for s in (root, gen, chat)} == {wf.span.get_span_context().trace_id}
    assert root.kind == gen.kind == SpanKind.INTERNAL
    assert chat.kind == SpanKind.CLIENT
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert gen.attributes["nl2sql.node.name"] == "generate_sql"
    usage = reply.usage_metadata
    assert usage is not None
    assert dict(chat.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "nl2sql_sim",
        "gen_ai.request.model": "nl2sql-sim-1",
        "gen_ai.response.model": "nl2sql-sim-1",
        "gen_ai.usage.input_tokens": usage["input_tokens"],
        "gen_ai.usage.output_tokens": usage["output_tokens"],
        "nl2sql.node.name": "generate_sql",
        "gen_ai.usage.cost.amount": pytest.approx(_packaged_cost("nl2sql-sim-1", usage)),
        "gen_ai.usage.cost.currency": "USD",
        "tenant.id": "acme",
        "user.id": "u-1",
        "session.id": "s-1",
    }
    for span in (root, gen, chat):
        assert span.status.status_code == StatusCode.UNSET
        assert span.attributes["tenant.id"] == "acme"
        assert "error.type" not in span.attributes
    # prompt/response text is NOT on spans (GenAI content is opt-in); it goes to the audit log
    assert not any("cancelled" in str(v) for v in chat.attributes.values())
    (call,) = audit_calls
    chat_span = captured.span("chat nl2sql-sim-1")  # the record carries the chat span's ids
    assert call.record.trace_id == chat_span.context.trace_id
    assert call.record.span_id == chat_span.context.span_id
    assert call.kwargs["prompt_text"].endswith("How many orders were cancelled?")
    assert call.kwargs["response_text"] == reply.text
    assert call.kwargs["status"] == "ok"
    assert call.kwargs["node"] == "generate_sql"
    assert call.kwargs["input_tokens"] == usage["input_tokens"]


def test_node_exception_is_recorded_reraised_unchanged_and_measured(captured):
    err = BoomError("kaput")
    with pytest.raises(BoomError) as info, workflow(), node("execute_sql"):
        raise err
    assert info.value is err
    span = captured.span("node execute_sql")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == f"{__name__}.BoomError"
    assert [e.name for e in span.events] == ["exception"]
    assert captured.span("invoke_workflow nl2sql").attributes["error.type"] == f"{__name__}.BoomError"
    (point,) = captured.points("nl2sql.node.duration")
    assert point.count == 1
    assert point.attributes["error.type"] == f"{__name__}.BoomError"


def test_decorated_sync_function_and_declared_error_type(captured):
    @node("validate_sql")
    def validate(x: int) -> int:
        if x < 0:
            raise DomainError("no column foo")
        assert current_node() == "validate_sql"
        return x * 2

    assert validate.__name__ == "validate"
    assert validate(2) == 4
    with pytest.raises(DomainError):
        validate(-1)
    spans = [s for s in captured.spans() if s.name == "node validate_sql"]
    assert [s.attributes.get("error.type") for s in spans] == [None, "unknown_column"]
    assert current_node() is None


def test_builtin_exception_error_type_is_bare_class_name(captured):
    with pytest.raises(KeyError), node("answer"):
        raise KeyError("x")
    assert captured.span("node answer").attributes["error.type"] == "KeyError"


def test_fail_without_exception(captured):
    with node("validate_sql") as step:
        step.fail("syntax_error", "bad SQL")
    span = captured.span("node validate_sql")
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "bad SQL"
    assert span.attributes["error.type"] == "syntax_error"
    assert span.events == ()

    @node("validate_sql")
    def decorated() -> None:
        fail_current_step("forbidden_write")

    decorated()
    assert captured.spans()[-1].attributes["error.type"] == "forbidden_write"


def test_async_nodes_decorator_and_context_manager(captured):
    @node("lookup_schema")
    async def lookup(delay: float) -> str:
        await asyncio.sleep(delay)
        return current_node() or ""

    async def one(tenant: str) -> str:
        with user_context(UserContext(tenant_id=tenant)):
            async with workflow():
                name = await lookup(0)
                async with node("answer"):
                    await asyncio.sleep(0)
                return name

    async def main() -> list[str]:
        return list(await asyncio.gather(one("t1"), one("t2"), one("t3")))

    assert asyncio.run(main()) == ["lookup_schema"] * 3
    spans = captured.spans()
    roots = {s.context.span_id: s for s in spans if s.name == "invoke_workflow nl2sql"}
    assert len(roots) == 3
    for span in spans:
        if span.name.startswith("node "):
            assert span.parent is not None
            parent = roots[span.parent.span_id]  # each node hangs under its own request's workflow
            assert span.attributes["tenant.id"] == parent.attributes["tenant.id"]

    @node("generate_sql")
    async def failing() -> None:
        raise BoomError("async")

    with pytest.raises(BoomError):
        asyncio.run(failing())
    assert captured.spans()[-1].attributes["error.type"] == f"{__name__}.BoomError"


def test_plain_llm_call_context_manager(captured, audit_calls):
    with (
        user_context(CTX),
        node("generate_sql"),
        llm_call(model="gpt-x", provider="openai", prompt="p") as call,
    ):
        call.set_response("SELECT 1", input_tokens=10, output_tokens=3, response_model="gpt-x-2026")
    chat = captured.span("chat gpt-x")
    assert chat.kind == SpanKind.CLIENT
    assert chat.attributes["gen_ai.response.model"] == "gpt-x-2026"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 10
    assert audit_calls[0].record.span_id == chat.context.span_id
    assert audit_calls[0].kwargs["response_text"] == "SELECT 1"

    with pytest.raises(TimeoutError), llm_call(model="gpt-x", provider="openai", prompt="q"):
        raise TimeoutError("slow")
    failed = [s for s in captured.spans() if s.name == "chat gpt-x"][-1]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "TimeoutError"
    assert audit_calls[-1].kwargs["status"] == "error"
    assert audit_calls[-1].kwargs["error_type"] == "TimeoutError"


def test_langchain_error_is_recorded(captured, audit_calls):
    class Broken(SimulatedChatModel):
        def _generate(self, *args, **kwargs):
            raise ConnectionError("llm down")

    with pytest.raises(ConnectionError), node("generate_sql"):
        Broken(time_scale=0).invoke("hi", config={"callbacks": [TokenHandler()]})
    chat = captured.span("chat nl2sql-sim-1")
    assert chat.status.status_code == StatusCode.ERROR
    assert chat.attributes["error.type"] == "ConnectionError"
    assert audit_calls[-1].kwargs["status"] == "error"


def test_no_sdk_is_a_cheap_noop():
    # without providers the API must still work (no-op spans), and never raise
    with workflow(), node("x") as step:
        step.fail("e")


def test_bad_names_rejected():
    with pytest.raises(ValueError, match="node name"):
        node("")
    from nl2sql_observability.instrumentation import record_validation

    with pytest.raises(ValueError, match="allowed: passed, failed"):
        record_validation("maybe")  # type: ignore[arg-type]
