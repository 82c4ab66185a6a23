"""Instrumentation API for NL2SQL app code: framework-agnostic, sync and async.

    @node("generate_sql")                 # decorator (sync or async function)
    def generate_sql(state): ...

    with node("validate_sql") as step:    # or a context manager (`with` / `async with`)
        ...
        step.fail("unknown_column", "no column foo")   # mark a handled failure

    with workflow():                      # span `invoke_workflow nl2sql` + nl2sql.request.duration
        graph.invoke(...)

    record_validation("failed", error_type="syntax_error")   # nl2sql.sql.validations

    with llm_call(model="gpt-4o", provider="openai", prompt=text) as call:   # plain LLM SDKs
        reply = client.chat(...)
        call.set_response(reply.text, input_tokens=..., output_tokens=...)

LangChain/LangGraph apps use `nl2sql_observability.langchain.TokenHandler` for the LLM part.

Everything goes to the global OpenTelemetry providers (set by the configurator); without them the
calls are cheap no-ops. No latencies are kept in this process: the MeterProvider is the store.
An exception raised by wrapped code is recorded (`error.type`, span status ERROR, the duration is
still measured) and re-raised unchanged. Telemetry errors never reach the app.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from nl2sql_observability import __version__
from nl2sql_observability import semconv as sc
from nl2sql_observability.context import (
    _NODE,
    _USER_CONTEXT,
    UserContext,
    current_tenant_id,
    current_user_context,
)

__all__ = [
    "LlmCall",
    "Step",
    "count_validation",
    "error_type_of",
    "fail_current_step",
    "has_sdk",
    "llm_call",
    "node",
    "record_validation",
    "use_providers",
    "workflow",
]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_ATTR_CACHE_MAX = 4096


def error_type_of(exc: BaseException) -> str:
    """`error.type` for an exception: its `error_type` attribute if it has a string one, else its
    class name (module-qualified unless builtin), which keeps the value set small."""
    declared = getattr(exc, "error_type", None)
    if isinstance(declared, str) and declared:
        return declared
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class _Instruments:
    """Tracer, instruments and attribute-dict caches, created once (hot path stays allocation-light).

    The API's proxy tracer/meter forward to the real providers once they are set globally."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.injected = tracer_provider is not None or meter_provider is not None
        self.tracer = trace.get_tracer(sc.SCOPE_NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(sc.SCOPE_NAME, __version__, meter_provider=meter_provider)
        durations = list(sc.DURATION_BUCKETS)
        self.node_duration = meter.create_histogram(
            sc.NODE_DURATION,
            unit=sc.UNIT_SECONDS,
            description="Duration of one NL2SQL graph node.",
            explicit_bucket_boundaries_advisory=durations,
        )
        self.request_duration = meter.create_histogram(
            sc.REQUEST_DURATION,
            unit=sc.UNIT_SECONDS,
            description="Duration of one NL2SQL request (a workflow invocation).",
            explicit_bucket_boundaries_advisory=durations,
        )
        self.validations = meter.create_counter(
            sc.SQL_VALIDATIONS, unit=sc.UNIT_VALIDATION, description="SQL validations by outcome."
        )
        self.llm_tokens = meter.create_counter(
            sc.LLM_TOKENS, unit=sc.UNIT_TOKEN, description="LLM tokens by type, model, tenant and node."
        )
        self.llm_cost = meter.create_counter(
            sc.LLM_COST,
            unit=sc.UNIT_USD,
            description="LLM cost (tokens x the price table) by model, tenant and node.",
        )
        self.unpriced_tokens = meter.create_counter(
            sc.LLM_UNPRICED_TOKENS, unit=sc.UNIT_TOKEN, description="LLM tokens of models with no price."
        )
        self.token_usage = meter.create_histogram(
            sc.GEN_AI_CLIENT_TOKEN_USAGE,
            unit=sc.UNIT_TOKEN,
            description="Number of input and output tokens used per GenAI operation.",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )
        self.operation_duration = meter.create_histogram(
            sc.GEN_AI_CLIENT_OPERATION_DURATION,
            unit=sc.UNIT_SECONDS,
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=durations,
        )
        self._node_span: dict[str, tuple[str, dict[str, str]]] = {}
        self._attrs: dict[tuple[str | None, ...], dict[str, str]] = {}

    def node_span(self, name: str) -> tuple[str, dict[str, str]]:
        found = self._node_span.get(name)
        if found is None:
            found = (sc.NODE_SPAN_PREFIX + name, {sc.NODE_NAME: name})
            if len(self._node_span) < _ATTR_CACHE_MAX:
                self._node_span[name] = found
        return found

    def attrs(self, *pairs: tuple[str, str | None]) -> dict[str, str]:
        """A cached, shared, read-only attribute dict for these (key, value) pairs (None = absent)."""
        key = tuple(v for pair in pairs for v in pair)
        found = self._attrs.get(key)
        if found is None:
            found = {k: v for k, v in pairs if v is not None}
            if len(self._attrs) >= _ATTR_CACHE_MAX:
                self._attrs.clear()
            self._attrs[key] = found
        return found


_instruments: _Instruments | None = None


def _get() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def use_providers(
    tracer_provider: trace.TracerProvider | None = None, meter_provider: metrics.MeterProvider | None = None
) -> None:
    """Send this API's telemetry to these providers instead of the global ones (tests, or apps that
    keep their providers local). `use_providers()` with no arguments goes back to the globals."""
    global _instruments
    _instruments = (
        _Instruments(tracer_provider, meter_provider) if tracer_provider or meter_provider else None
    )


def has_sdk() -> bool:
    """True when telemetry goes somewhere: providers were given to `use_providers`, or an SDK
    TracerProvider is installed globally."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    return (_instruments is not None and _instruments.injected) or isinstance(
        trace.get_tracer_provider(), SdkTracerProvider
    )


_CURRENT_STEP: ContextVar[Step | None] = ContextVar("nl2sql_current_step", default=None)


class Step:
    """One running node or workflow: a span that is current while the body runs, plus its duration.

    The explicit API enters and exits it in one context (`_enter`/`_exit`); the zero-code
    instrumentor starts and finishes it from LangChain callbacks (`start`/`finish`, `auto=True`)."""

    __slots__ = (
        "_error_message",
        "_node_token",
        "_otel_token",
        "_start",
        "_step_token",
        "auto",
        "error_type",
        "kind",
        "name",
        "span",
        "tenant",
        "validation_recorded",
    )

    def __init__(self, kind: Literal["node", "workflow"], name: str, *, auto: bool = False) -> None:
        self.kind = kind
        self.name = name
        self.auto = auto
        self.error_type: str | None = None
        self._error_message: str | None = None
        self.span: Span = trace.INVALID_SPAN
        self.tenant: str | None = None
        self.validation_recorded = False
        self._otel_token: Token[Any] | None = None
        self._node_token: Token[str | None] | None = None
        self._step_token: Token[Step | None] | None = None
        self._start = 0.0

    def fail(self, error_type: str, message: str | None = None) -> None:
        """Mark this step failed without raising (e.g. a handled validation failure)."""
        self.error_type = error_type
        self._error_message = message

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, parent: Context | None = None, tenant: str | None = None) -> Step:
        """Start the span (child of `parent`, else of the current context) and the clock; the tenant
        is the one given, else the active one. Does not make the span current."""
        ins = _get()
        if self.kind == "node":
            span_name, span_attrs = ins.node_span(self.name)
        else:
            span_name = sc.WORKFLOW_SPAN_PREFIX + self.name
            span_attrs = {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_WORKFLOW}
        self.tenant = tenant if tenant is not None else current_tenant_id()
        self.span = ins.tracer.start_span(
            span_name, context=parent, kind=SpanKind.INTERNAL, attributes=span_attrs
        )
        self._start = time.perf_counter()
        return self

    def finish(self, exc: BaseException | None) -> None:
        """Record the outcome on the span, record the duration histogram, end the span. Never raises."""
        elapsed = time.perf_counter() - self._start
        span = self.span
        try:
            if exc is not None and self.error_type is None:
                self.error_type = error_type_of(exc)
                self._error_message = f"{type(exc).__name__}: {exc}"
            error_type = self.error_type
            if exc is not None:
                span.record_exception(exc, escaped=True)
            if error_type is not None:
                span.set_attribute(sc.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, self._error_message))
            ins = _get()
            # Recorded while the span is current, so the histogram exemplar points at it.
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                if self.kind == "node":
                    ins.node_duration.record(
                        elapsed,
                        ins.attrs(
                            (sc.NODE_NAME, self.name),
                            (sc.TENANT_ID, self.tenant),
                            (sc.ERROR_TYPE, error_type),
                        ),
                    )
                else:
                    ins.request_duration.record(
                        elapsed, ins.attrs((sc.TENANT_ID, self.tenant), (sc.ERROR_TYPE, error_type))
                    )
            finally:
                otel_context.detach(token)
        except Exception:  # pragma: no cover - telemetry must never break the app
            _log.debug("recording %s %s failed", self.kind, self.name, exc_info=True)
        finally:
            span.end()

    def _enter(self) -> Step:
        self.start()
        self._otel_token = otel_context.attach(trace.set_span_in_context(self.span))
        if self.kind == "node":
            self._node_token = _NODE.set(self.name)
        self._step_token = _CURRENT_STEP.set(self)
        return self

    def _exit(self, exc: BaseException | None) -> None:
        try:
            self.finish(exc)
        finally:
            # ValueError: exited in another context than entered (e.g. a generator finalised elsewhere)
            if self._step_token is not None:
                with contextlib.suppress(ValueError):
                    _CURRENT_STEP.reset(self._step_token)
            if self._node_token is not None:
                with contextlib.suppress(ValueError):
                    _NODE.reset(self._node_token)
            if self._otel_token is not None:
                otel_context.detach(self._otel_token)

    def __enter__(self) -> Step:
        return self._enter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Step:
        return self._enter()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)


class _BorrowedStep:
    """What the explicit API returns inside a zero-code step of the same kind and name: no second span
    or measurement (nothing is counted twice); `fail()` marks the zero-code step."""

    __slots__ = ("_token", "owner")

    def __init__(self, owner: Step) -> None:
        self.owner = owner
        self._token: Token[Step | None] | None = None

    @property
    def kind(self) -> str:
        return self.owner.kind

    @property
    def name(self) -> str:
        return self.owner.name

    @property
    def span(self) -> Span:
        return self.owner.span

    def fail(self, error_type: str, message: str | None = None) -> None:
        self.owner.fail(error_type, message)

    def _enter(self) -> _BorrowedStep:
        self._token = _CURRENT_STEP.set(cast(Step, self))
        return self

    def _exit(self, exc: BaseException | None) -> None:
        if self._token is not None:
            with contextlib.suppress(ValueError):
                _CURRENT_STEP.reset(self._token)


def _begin(kind: Literal["node", "workflow"], name: str) -> Step | _BorrowedStep:
    """Enter an explicit step, or borrow the zero-code step already doing the same job."""
    current = _CURRENT_STEP.get()
    if isinstance(current, _BorrowedStep):
        current = current.owner
    if (
        current is not None
        and current.auto
        and current.kind == kind
        and (kind == "workflow" or current.name == name)
    ):
        return _BorrowedStep(current)._enter()
    return Step(kind, name)._enter()


class _StepFactory:
    """What `node(name)`/`workflow()` return: a context manager (each `with` is a new Step) and a
    decorator for sync and async functions."""

    __slots__ = ("_kind", "_name")

    def __init__(self, kind: Literal["node", "workflow"], name: str) -> None:
        self._kind = kind
        self._name = name

    def __enter__(self) -> Step:
        return cast(Step, _begin(self._kind, self._name))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The innermost step of this context is the one this `with` entered (safe when one factory
        # object is shared by concurrent threads/tasks: each has its own context).
        step = _CURRENT_STEP.get()
        if step is not None:
            step._exit(exc)

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        kind, name = self._kind, self._name
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                step = _begin(kind, name)
                try:
                    result = await afn(*args, **kwargs)
                except BaseException as exc:
                    step._exit(exc)
                    raise
                step._exit(None)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            step = _begin(kind, name)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                step._exit(exc)
                raise
            step._exit(None)
            return result

        return wrapper


def node(name: str) -> _StepFactory:
    """Span `node {name}` (INTERNAL, `nl2sql.node.name`) and `nl2sql.node.duration`.

    Use as `@node("x")` on a sync or async function, or `with node("x") as step:` /
    `async with node("x") as step:`. `step.fail(error_type)` marks a handled failure."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"node name must be a non-empty string, got {name!r}")
    return _StepFactory("node", name)


def workflow(name: str = sc.DEFAULT_WORKFLOW_NAME) -> _StepFactory:
    """Span `invoke_workflow {name}` (INTERNAL, `gen_ai.operation.name=invoke_workflow`) and
    `nl2sql.request.duration`; one per question. Decorator or (async) context manager."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"workflow name must be a non-empty string, got {name!r}")
    return _StepFactory("workflow", name)


def fail_current_step(error_type: str, message: str | None = None) -> None:
    """Mark the innermost running node/workflow failed (for decorated functions without a handle)."""
    step = _CURRENT_STEP.get()
    if step is not None:
        step.fail(error_type, message)


_OUTCOMES = ("passed", "failed")


def record_validation(outcome: Literal["passed", "failed"], error_type: str | None = None) -> None:
    """Count one SQL validation.

    `nl2sql.sql.validations{nl2sql.validation.outcome, tenant.id, error.type?}`. Inside a node that
    the zero-code instrumentor counts as a validator, this call replaces its own count."""
    if outcome not in _OUTCOMES:
        raise ValueError(f"validation outcome {outcome!r} is not allowed; allowed: passed, failed")
    step = _CURRENT_STEP.get()
    if step is not None:
        owner = step.owner if isinstance(step, _BorrowedStep) else step
        owner.validation_recorded = True
    count_validation(outcome, error_type, current_tenant_id())


def count_validation(
    outcome: Literal["passed", "failed"], error_type: str | None, tenant: str | None
) -> None:
    """Add one to `nl2sql.sql.validations` for this tenant. Never raises."""
    try:
        ins = _get()
        ins.validations.add(
            1,
            ins.attrs(
                (sc.VALIDATION_OUTCOME, outcome),
                (sc.TENANT_ID, tenant),
                (sc.ERROR_TYPE, error_type if outcome == "failed" else None),
            ),
        )
    except Exception:  # pragma: no cover
        _log.debug("recording a validation failed", exc_info=True)


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
        self.node = node if node is not None else _NODE.get()
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
        self.span = _get().tracer.start_span(
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

    def finish(self) -> None:
        """End the span and record metrics and the audit event (once; later calls do nothing)."""
        if self._done:
            return
        self._done = True
        elapsed = time.perf_counter() - self.start
        span = self.span
        # The audit event takes its trace ids and tenant from the active context: make it this call's.
        token = otel_context.attach(trace.set_span_in_context(span))
        user_token = _USER_CONTEXT.set(self.user)
        node_token = _NODE.set(self.node)
        try:
            self._record(span, elapsed)
        except Exception:  # pragma: no cover - telemetry must never break the app
            _log.debug("recording LLM call failed", exc_info=True)
        finally:
            _NODE.reset(node_token)
            _USER_CONTEXT.reset(user_token)
            otel_context.detach(token)
            span.end()

    def _record(self, span: Span, elapsed: float) -> None:
        ins = _get()
        response_model = self.response_model or self.model
        span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, response_model)
        if self.input_tokens is not None:
            span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, self.input_tokens)
        if self.output_tokens is not None:
            span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, self.output_tokens)
        if self.error_type is not None:
            span.set_attribute(sc.ERROR_TYPE, self.error_type)
            span.set_status(Status(StatusCode.ERROR, self.error_message))
        base = (
            (sc.GEN_AI_OPERATION_NAME, sc.OPERATION_CHAT),
            (sc.GEN_AI_PROVIDER_NAME, self.provider),
            (sc.GEN_AI_REQUEST_MODEL, self.model),
            (sc.GEN_AI_RESPONSE_MODEL, response_model),
            (sc.TENANT_ID, self.tenant),
        )
        ins.operation_duration.record(elapsed, ins.attrs(*base, (sc.ERROR_TYPE, self.error_type)))
        for token_type, count in (("input", self.input_tokens), ("output", self.output_tokens)):
            if count is None:
                continue
            ins.token_usage.record(count, ins.attrs(*base, (sc.GEN_AI_TOKEN_TYPE, token_type)))
            ins.llm_tokens.add(count, self._token_attrs(ins, token_type))
        _audit(self, elapsed)
        self._record_cost(ins, span)  # last: a broken price table costs nothing else

    def _token_attrs(self, ins: _Instruments, token_type: str) -> dict[str, str]:
        """Attributes of `nl2sql.llm.tokens` and `nl2sql.llm.unpriced_tokens`."""
        return ins.attrs(
            (sc.GEN_AI_TOKEN_TYPE, token_type),
            (sc.GEN_AI_REQUEST_MODEL, self.model),
            (sc.GEN_AI_PROVIDER_NAME, self.provider),
            (sc.TENANT_ID, self.tenant),
            (sc.NODE_NAME, self.node),
        )

    def _record_cost(self, ins: _Instruments, span: Span) -> None:
        """`nl2sql.llm.cost` and `gen_ai.usage.cost.*` from the price table (cached per model), or
        `nl2sql.llm.unpriced_tokens` when the model has no price (cost is never guessed)."""
        if self.input_tokens is None and self.output_tokens is None:
            return
        from nl2sql_observability.pricing import CURRENCY, price_table

        price = price_table().lookup(self.model)
        if price is None:
            for token_type, count in (("input", self.input_tokens), ("output", self.output_tokens)):
                if count:
                    ins.unpriced_tokens.add(count, self._token_attrs(ins, token_type))
            return
        cost = price.cost(max(self.input_tokens or 0, 0), max(self.output_tokens or 0, 0))
        span.set_attribute(sc.GEN_AI_USAGE_COST_AMOUNT, cost)
        span.set_attribute(sc.GEN_AI_USAGE_COST_CURRENCY, CURRENCY)
        ins.llm_cost.add(
            cost,
            ins.attrs(
                (sc.GEN_AI_REQUEST_MODEL, self.model),
                (sc.GEN_AI_PROVIDER_NAME, self.provider),
                (sc.TENANT_ID, self.tenant),
                (sc.NODE_NAME, self.node),
            ),
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


def _audit(call: LlmCall, elapsed: float) -> None:
    try:
        from nl2sql_observability.audit import record_llm_call

        record_llm_call(
            model=call.model,
            prompt_text=call.prompt_text,
            response_text=call.response_text,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            latency_ms=elapsed * 1000.0,
            status="error" if call.error_type is not None else "ok",
            node=call.node,
            error_type=call.error_type,
            error_message=call.error_message,
        )
    except Exception:  # pragma: no cover - the audit log never breaks the app
        _log.debug("audit record failed", exc_info=True)


def llm_call(*, model: str, provider: str, prompt: str = "") -> LlmCall:
    """Instrument one chat call to an LLM SDK (sync or async context manager).

    On exit: span `chat {model}` with GenAI semconv attributes, `gen_ai.client.operation.duration`,
    `gen_ai.client.token.usage`, `nl2sql.llm.tokens`, and an audit event with the (scrubbed) prompt
    and response. An exception is recorded (`error.type`) and re-raised unchanged."""
    return LlmCall(model=model, provider=provider, prompt_text=prompt)
