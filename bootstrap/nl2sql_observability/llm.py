"""LLM calls: `llm_call(...)` for plain LLM SDKs, and the `LlmCall` the LangChain handlers start and
finish from callbacks.

    with llm_call(model="gpt-4o", provider="openai", prompt=text) as call:
        reply = client.chat(...)
        call.set_response(reply.text, input_tokens=..., output_tokens=...)

A call ends in one immutable `CallRecord` (ids, tenant, user, session, node, model, tokens, cost,
status, timings, prompt and response); the span's closing attributes, the metrics and the audit event
are all made from it, and nothing reads the run state back. The audit event is only queued here: a
background writer scrubs and stores it (`audit.writer`).
"""

from __future__ import annotations

import logging
import time
from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from nl2sql_observability import semconv as sc
from nl2sql_observability.callrecord import CallRecord
from nl2sql_observability.context import UserContext, current_node, current_user_context
from nl2sql_observability.instruments import Instruments, error_type_of, get_instruments

__all__ = ["LlmCall", "llm_call"]

_log = logging.getLogger("nl2sql_observability.instrumentation")


class LlmCall:
    """One LLM chat call: span `chat {model}` (CLIENT), GenAI metrics, `nl2sql.llm.tokens`, audit event.

    Created by `llm_call(...)` (context manager) or by the LangChain `TokenHandler` (started and
    finished in separate callbacks). The node and tenant are captured at start."""

    __slots__ = (
        "_done",
        "_token",
        "error_message",
        "error_type",
        "input_tokens",
        "model",
        "node",
        "output_tokens",
        "prompt_text",
        "provider",
        "response_model",
        "response_text",
        "span",
        "start",
        "tenant",
        "user",
    )

    def __init__(
        self,
        *,
        model: str,
        provider: str,
        prompt_text: str = "",
        parent: Context | None = None,
        node: str | None = None,
        user: UserContext | None = None,
    ) -> None:
        self.model = model or "unknown"
        self.provider = provider or "unknown"
        self.prompt_text = prompt_text
        self.response_text = ""
        self.response_model: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.node = node if node is not None else current_node()
        self.user = user if user is not None else current_user_context()
        self.tenant = self.user.tenant_id if self.user is not None else None
        self._token: Token[Any] | None = None
        self._done = False
        attributes = {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_CHAT,
            sc.GEN_AI_PROVIDER_NAME: self.provider,
            sc.GEN_AI_REQUEST_MODEL: self.model,
        }
        if self.node is not None:
            attributes[sc.NODE_NAME] = self.node
        self.span = get_instruments().tracer.start_span(
            sc.CHAT_SPAN_PREFIX + self.model, context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        self.start = time.perf_counter()

    def set_response(
        self,
        text: str,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        response_model: str | None = None,
    ) -> None:
        """Record the reply text, token usage and the model that actually answered."""
        self.response_text = text
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.response_model = response_model

    def set_error(self, exc: BaseException) -> None:
        self.error_type = error_type_of(exc)
        self.error_message = f"{type(exc).__name__}: {exc}"
        self.span.record_exception(exc, escaped=True)

    def finish(self) -> CallRecord | None:
        """End the span; record the metrics and queue the audit event, all from the call's record
        (once: later calls do nothing and return None). Never raises."""
        if self._done:
            return None
        self._done = True
        end_time = time.time()
        elapsed = time.perf_counter() - self.start
        span = self.span
        record: CallRecord | None = None
        try:
            record = self.to_record(end_time, elapsed)
            record_call(record, span)
        except Exception:  # pragma: no cover - telemetry must never break the app
            _log.debug("recording LLM call failed", exc_info=True)
        finally:
            span.end()
        if record is not None:
            _submit_audit(record)
        return record

    def to_record(self, end_time: float, elapsed: float) -> CallRecord:
        """The immutable record of this call as it ended."""
        context = self.span.get_span_context()
        user = self.user
        return CallRecord(
            trace_id=context.trace_id,
            span_id=context.span_id,
            tenant_id=self.tenant,
            user_id=user.user_id if user is not None else None,
            session_id=user.session_id if user is not None else None,
            node=self.node,
            model=self.model,
            provider=self.provider,
            response_model=self.response_model or self.model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost=_cost(self.model, self.input_tokens, self.output_tokens),
            status="error" if self.error_type is not None else "ok",
            error_type=self.error_type,
            error_message=self.error_message,
            end_time=end_time,
            duration_s=elapsed,
            prompt_text=self.prompt_text,
            response_text=self.response_text,
        )

    # context-manager use (plain LLM SDKs): the chat span is current while the body runs
    def __enter__(self) -> LlmCall:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        if exc is not None:
            self.set_error(exc)
        self.finish()

    async def __aenter__(self) -> LlmCall:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _cost(model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
    """The call's cost from the price table (cached per model); None when no usage was reported, the
    model has no price, or the table is broken (the cost is never guessed)."""
    if input_tokens is None and output_tokens is None:
        return None
    try:
        from nl2sql_observability.pricing import price_table

        price = price_table().lookup(model)
        if price is None:
            return None
        return price.cost(max(input_tokens or 0, 0), max(output_tokens or 0, 0))
    except Exception:  # a broken price table costs nothing else: the tokens count as unpriced
        _log.debug("pricing %s failed", model, exc_info=True)
        return None


def record_call(record: CallRecord, span: Span) -> None:
    """The span's closing attributes and every metric of one call, from its record. The metrics are
    recorded while the call's span is current, so their exemplars point at it."""
    from nl2sql_observability.pricing import CURRENCY

    ins = get_instruments()
    span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, record.response_model)
    if record.input_tokens is not None:
        span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, record.input_tokens)
    if record.output_tokens is not None:
        span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, record.output_tokens)
    if record.cost is not None:
        span.set_attribute(sc.GEN_AI_USAGE_COST_AMOUNT, record.cost)
        span.set_attribute(sc.GEN_AI_USAGE_COST_CURRENCY, CURRENCY)
    if record.error_type is not None:
        span.set_attribute(sc.ERROR_TYPE, record.error_type)
        span.set_status(Status(StatusCode.ERROR, record.error_message))
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        base = (
            (sc.GEN_AI_OPERATION_NAME, sc.OPERATION_CHAT),
            (sc.GEN_AI_PROVIDER_NAME, record.provider),
            (sc.GEN_AI_REQUEST_MODEL, record.model),
            (sc.GEN_AI_RESPONSE_MODEL, record.response_model),
            (sc.TENANT_ID, record.tenant_id),
        )
        ins.operation_duration.record(record.duration_s, ins.attrs(*base, (sc.ERROR_TYPE, record.error_type)))
        for token_type, count in (("input", record.input_tokens), ("output", record.output_tokens)):
            if count is None:
                continue
            ins.token_usage.record(count, ins.attrs(*base, (sc.GEN_AI_TOKEN_TYPE, token_type)))
            ins.llm_tokens.add(count, _token_attrs(ins, record, token_type))
            if record.cost is None and count:
                ins.unpriced_tokens.add(count, _token_attrs(ins, record, token_type))
        if record.cost is not None:
            ins.llm_cost.add(
                record.cost,
                ins.attrs(
                    (sc.GEN_AI_REQUEST_MODEL, record.model),
                    (sc.GEN_AI_PROVIDER_NAME, record.provider),
                    (sc.TENANT_ID, record.tenant_id),
                    (sc.NODE_NAME, record.node),
                ),
            )
    finally:
        otel_context.detach(token)


def _token_attrs(ins: Instruments, record: CallRecord, token_type: str) -> dict[str, str]:
    """Attributes of `nl2sql.llm.tokens` and `nl2sql.llm.unpriced_tokens`."""
    return ins.attrs(
        (sc.GEN_AI_TOKEN_TYPE, token_type),
        (sc.GEN_AI_REQUEST_MODEL, record.model),
        (sc.GEN_AI_PROVIDER_NAME, record.provider),
        (sc.TENANT_ID, record.tenant_id),
        (sc.NODE_NAME, record.node),
    )


def _submit_audit(record: CallRecord) -> None:
    try:
        from nl2sql_observability import audit

        audit.submit(record)
    except Exception:  # pragma: no cover - the audit log never breaks the app
        _log.debug("audit submit failed", exc_info=True)


def llm_call(*, model: str, provider: str, prompt: str = "") -> LlmCall:
    """Instrument one chat call to an LLM SDK (sync or async context manager).

    On exit: span `chat {model}` with GenAI semconv attributes, `gen_ai.client.operation.duration`,
    `gen_ai.client.token.usage`, `nl2sql.llm.tokens`, and an audit event with the (scrubbed) prompt
    and response. An exception is recorded (`error.type`) and re-raised unchanged."""
    return LlmCall(model=model, provider=provider, prompt_text=prompt)
