"""Tenant context: strict model, bad input, baggage + contextvar propagation, allow-list on spans."""

from __future__ import annotations

import asyncio
import threading

import pytest
from nl2sql_observability.context import GraphState, UserContext, current_user_context, user_context
from nl2sql_observability.instrumentation import node
from opentelemetry import baggage
from opentelemetry import context as otel_context
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("acme\n", "newline"),
        ("ac\nme", "inner newline"),
        ("acme corp", "space"),
        ("a" * 65, "65 characters"),
        ("Acme", "upper case"),
        ("", "empty"),
        ("-acme", "leading dash"),
        ("acmé", "non-ascii"),
    ],
)
def test_bad_tenant_ids_fail_with_one_clear_message(value, why):
    with pytest.raises(ValidationError) as info:
        UserContext(tenant_id=value)
    errors = info.value.errors()
    assert len(errors) == 1, why
    message = str(info.value)
    assert "tenant_id" in message
    assert repr(value) in message  # names the value
    assert "^[a-z0-9][a-z0-9_.-]{0,63}$" in message  # and what is allowed


def test_good_tenant_ids():
    assert UserContext(tenant_id="a" * 64).tenant_id == "a" * 64
    assert UserContext(tenant_id="acme-eu.prod_1").tenant_id == "acme-eu.prod_1"


def test_unknown_field_rejected_naming_field_value_and_allowed():
    with pytest.raises(ValidationError) as info:
        UserContext.model_validate({"tenant_id": "acme", "tenant": "oops"})
    message = str(info.value)
    assert "'tenant'" in message
    assert "'oops'" in message
    assert "allowed fields: tenant_id, user_id, session_id, roles" in message


def test_bad_user_and_session_ids():
    with pytest.raises(ValidationError, match="user_id 'a b' is not allowed"):
        UserContext(tenant_id="acme", user_id="a b")
    with pytest.raises(ValidationError, match="session_id"):
        UserContext(tenant_id="acme", session_id="x\n")


def test_strict_and_frozen():
    with pytest.raises(ValidationError):
        UserContext(tenant_id=123)  # type: ignore[arg-type]
    ctx = UserContext(tenant_id="acme", roles=["admin"])  # type: ignore[arg-type]
    assert ctx.roles == ("admin",)
    with pytest.raises(ValidationError):
        ctx.tenant_id = "other"  # type: ignore[misc]


def test_graph_state_holds_the_model():
    state = GraphState.model_validate({"user_context": {"tenant_id": "acme", "user_id": "u"}})
    assert isinstance(state.user_context, UserContext)
    with pytest.raises(ValidationError):
        GraphState.model_validate({"user_context": {"tenant_id": "Bad Tenant"}})


def test_user_context_sets_and_restores_baggage_and_contextvar():
    assert current_user_context() is None
    with user_context({"tenant_id": "acme", "user_id": "u-1"}) as ctx:
        assert current_user_context() == ctx
        assert baggage.get_baggage("tenant.id") == "acme"
        assert baggage.get_baggage("user.id") == "u-1"
        assert baggage.get_baggage("session.id") is None
        with user_context(UserContext(tenant_id="inner")):
            assert current_user_context().tenant_id == "inner"
            assert baggage.get_baggage("user.id") is None  # not inherited from the outer user
        assert current_user_context() == ctx
    assert current_user_context() is None
    assert baggage.get_baggage("tenant.id") is None


def test_restored_when_body_raises():
    with pytest.raises(RuntimeError), user_context(UserContext(tenant_id="acme")):
        raise RuntimeError
    assert current_user_context() is None


def test_bad_mapping_raises_before_entering():
    with pytest.raises(ValidationError), user_context({"tenant_id": "Nope"}):
        pass
    assert current_user_context() is None


def test_tasks_and_threads_are_isolated():
    async def one(tenant: str) -> str:
        with user_context(UserContext(tenant_id=tenant)):
            await asyncio.sleep(0)
            found = current_user_context()
            return found.tenant_id if found else ""

    async def main() -> list[str]:
        return list(await asyncio.gather(*(one(f"t{i}") for i in range(5))))

    assert asyncio.run(main()) == [f"t{i}" for i in range(5)]
    seen: list[object] = []
    with user_context(UserContext(tenant_id="acme")):
        t = threading.Thread(target=lambda: seen.append(current_user_context()))
        t.start()
        t.join()
    assert seen == [None]  # a plain thread does not inherit contextvars (copy_context() if you want it)


def test_incoming_baggage_fallback_is_validated():
    token = otel_context.attach(baggage.set_baggage("tenant.id", "upstream"))
    try:
        assert current_user_context().tenant_id == "upstream"
    finally:
        otel_context.detach(token)
    token = otel_context.attach(baggage.set_baggage("tenant.id", "Evil Tenant\n"))
    try:
        assert current_user_context() is None
    finally:
        otel_context.detach(token)


def test_only_allow_listed_baggage_reaches_spans(captured):
    octx = baggage.set_baggage("secret.key", "s3cr3t")
    token = otel_context.attach(octx)
    try:
        with user_context(UserContext(tenant_id="acme", user_id="u", session_id="s")), node("answer"):
            pass
    finally:
        otel_context.detach(token)
    span = captured.span("node answer")
    assert span.attributes["tenant.id"] == "acme"
    assert span.attributes["user.id"] == "u"
    assert span.attributes["session.id"] == "s"
    assert "secret.key" not in span.attributes
