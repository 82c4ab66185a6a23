"""Steps of an NL2SQL request: `node(name)` and `workflow()` (decorators or (async) context managers),
each a span that is current while its body runs plus its duration histogram; SQL validation counts.

    @node("generate_sql")                 # decorator (sync or async function)
    def generate_sql(state): ...

    with node("validate_sql") as step:    # or a context manager (`with` / `async with`)
        ...
        step.fail("unknown_column", "no column foo")   # mark a handled failure

    with workflow():                      # span `invoke_workflow nl2sql` + nl2sql.request.duration
        graph.invoke(...)

    record_validation("failed", error_type="syntax_error")   # nl2sql.sql.validations

The zero-code instrumentor starts and finishes the same `Step`s from LangChain callbacks; an explicit
step inside a zero-code one of the same kind and name borrows it (nothing is counted twice).
An exception raised by wrapped code is recorded (`error.type`, span status ERROR, the duration is
still measured) and re-raised unchanged. Telemetry errors never reach the app.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import Token
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from nl2sql_observability import semconv as sc
from nl2sql_observability.context import (
    current_step,
    current_tenant_id,
    reset_node,
    reset_step,
    set_node,
    set_step,
)
from nl2sql_observability.instruments import error_type_of, get_instruments
from nl2sql_observability.outcome import RequestOutcome, current_request
from nl2sql_observability.request_end import finish_request

__all__ = [
    "Step",
    "count_validation",
    "fail_current_step",
    "node",
    "record_validation",
    "report_validation",
    "workflow",
]

_log = logging.getLogger("nl2sql_observability.instrumentation")

P = ParamSpec("P")
R = TypeVar("R")


class Step:
    """One running node or workflow: a span that is current while the body runs, plus its duration.

    The explicit API enters and exits it in one context (`_enter`/`_exit`); the zero-code
    instrumentor starts and finishes it from LangChain callbacks (`start`/`finish`, `auto=True`)."""

    __slots__ = (
        "_error_message",
        "_node_token",
        "_otel_token",
        "_start",
        "_start_ns",
        "_step_token",
        "auto",
        "error_type",
        "kind",
        "name",
        "request",
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
        # The workflow's outcome tracker; a node shares its workflow's (None outside any workflow).
        self.request: RequestOutcome | None = None
        self._otel_token: Token[Any] | None = None
        self._node_token: Token[str | None] | None = None
        self._step_token: Token[Any] | None = None
        self._start = 0.0
        self._start_ns = 0

    def fail(self, error_type: str, message: str | None = None) -> None:
        """Mark this step failed without raising (e.g. a handled validation failure)."""
        self.error_type = error_type
        self._error_message = message

    # --- lifecycle -------------------------------------------------------------------------
    def start(
        self,
        parent: Context | None = None,
        tenant: str | None = None,
        request: RequestOutcome | None = None,
    ) -> Step:
        """Start the span (child of `parent`, else of the current context) and the clock; the tenant
        is the one given, else the active one; a node reports to `request`, else to the current
        workflow's. Does not make the span current."""
        ins = get_instruments()
        if self.kind == "node":
            span_name, span_attrs = ins.node_span(self.name)
            self.request = request if request is not None else current_request()
        else:
            span_name = sc.WORKFLOW_SPAN_PREFIX + self.name
            span_attrs = {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_WORKFLOW}
            self.request = RequestOutcome()
        self.tenant = tenant if tenant is not None else current_tenant_id()
        # One clock for the span and the duration histogram: the span ends at start + the measured
        # duration, so a histogram's p95 and its exemplar's span tell the same time.
        self._start_ns = time.time_ns()
        self.span = ins.tracer.start_span(
            span_name,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=span_attrs,
            start_time=self._start_ns,
        )
        self._start = time.perf_counter()
        return self

    def finish(self, exc: BaseException | None) -> None:
        """Record the outcome on the span, record the duration histogram, end the span. Never raises."""
        elapsed = time.perf_counter() - self._start
        span = self.span
        try:
            request = self.request if self.kind == "workflow" else None
            outcome: str | None = None
            if request is not None:
                outcome, self.error_type = request.resolve(exc, self.error_type)
                span.set_attribute(sc.OUTCOME, outcome)
                span.set_attribute(sc.CORRECTION_ATTEMPTS, request.corrections)
                if self.error_type is not None and self._error_message is None:
                    self._error_message = f"{outcome}: {self.error_type}"
            if exc is not None and self.error_type is None:
                self.error_type = error_type_of(exc)
            if exc is not None and (self._error_message is None or request is not None):
                self._error_message = f"{type(exc).__name__}: {exc}"
            error_type = self.error_type
            if exc is not None:
                span.record_exception(exc, escaped=True)
            if error_type is not None:
                span.set_attribute(sc.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, self._error_message))
            ins = get_instruments()
            # Recorded while the span is current, so the histogram exemplar points at it (it already is
            # when the step was entered with `with`, or activated by the zero-code handler).
            token = (
                None
                if trace.get_current_span() is span
                else otel_context.attach(trace.set_span_in_context(span))
            )
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
                        elapsed,
                        ins.attrs(
                            (sc.OUTCOME, outcome), (sc.TENANT_ID, self.tenant), (sc.ERROR_TYPE, error_type)
                        ),
                    )
                    if request is not None and outcome is not None:
                        finish_request(
                            span, self.tenant, outcome, error_type, request.corrections, elapsed, request
                        )
            finally:
                if token is not None:
                    otel_context.detach(token)
        except Exception:  # pragma: no cover - telemetry must never break the app
            _log.debug("recording %s %s failed", self.kind, self.name, exc_info=True)
        finally:
            span.end(end_time=self._start_ns + round(elapsed * 1e9))

    def _enter(self) -> Step:
        self.start()
        self._otel_token = otel_context.attach(trace.set_span_in_context(self.span))
        if self.kind == "node":
            self._node_token = set_node(self.name)
        self._step_token = set_step(self)
        return self

    def _exit(self, exc: BaseException | None) -> None:
        try:
            self.finish(exc)
        finally:
            if self._step_token is not None:
                reset_step(self._step_token)
            if self._node_token is not None:
                reset_node(self._node_token)
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
        self._token: Token[Any] | None = None

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
        self._token = set_step(self)
        return self

    def _exit(self, exc: BaseException | None) -> None:
        if self._token is not None:
            reset_step(self._token)


def _begin(kind: Literal["node", "workflow"], name: str) -> Step | _BorrowedStep:
    """Enter an explicit step, or borrow the zero-code step already doing the same job."""
    current = current_step()
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
        step = current_step()
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
    step = current_step()
    if step is not None:
        step.fail(error_type, message)


_OUTCOMES = ("passed", "failed")


def record_validation(outcome: Literal["passed", "failed"], error_type: str | None = None) -> None:
    """Count one SQL validation.

    `nl2sql.sql.validations{nl2sql.validation.outcome, tenant.id, error.type?}`. Inside a node that
    the zero-code instrumentor counts as a validator, this call replaces its own count."""
    if outcome not in _OUTCOMES:
        raise ValueError(f"validation outcome {outcome!r} is not allowed; allowed: passed, failed")
    step = current_step()
    if step is not None:
        owner = step.owner if isinstance(step, _BorrowedStep) else step
        owner.validation_recorded = True
        report_validation(owner.request, error_type if outcome == "failed" else None, outcome == "failed")
    count_validation(outcome, error_type, current_tenant_id())


def report_validation(request: RequestOutcome | None, error_type: str | None, failed: bool) -> None:
    """Tell the request's outcome about one validation (a failure stays pending until a later
    validation passes or a query runs). Never raises."""
    if request is None:
        return
    if failed:
        request.failed("validation", sc.OUTCOME_VALIDATION_REJECTED, error_type or "validation_failed")
    else:
        request.succeeded("validation")


def count_validation(
    outcome: Literal["passed", "failed"], error_type: str | None, tenant: str | None
) -> None:
    """Add one to `nl2sql.sql.validations` for this tenant. Never raises."""
    try:
        ins = get_instruments()
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
