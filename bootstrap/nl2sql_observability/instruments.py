"""The tracer, the contract's instruments and their attribute caches, shared by steps and LLM calls.

Everything goes to the global OpenTelemetry providers (set by the configurator) unless
`use_providers` names others; without an SDK the calls are cheap no-ops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import metrics, trace

from nl2sql_observability import __version__
from nl2sql_observability import semconv as sc

__all__ = ["Instruments", "error_type_of", "get_instruments", "has_sdk", "use_providers"]

_ATTR_CACHE_MAX = 4096


def error_type_of(exc: BaseException) -> str:
    """`error.type` for an exception: its `error_type` attribute if it has a string one, else its
    class name (module-qualified unless builtin), which keeps the value set small."""
    declared = getattr(exc, "error_type", None)
    if isinstance(declared, str) and declared:
        return declared
    cls = type(exc)
    if cls is asyncio.TimeoutError:  # Python 3.10's own class; 3.11 made it the builtin TimeoutError
        return "TimeoutError"
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class Instruments:
    """Tracer, instruments and attribute-dict caches, created once (hot path stays allocation-light).

    The API's proxy tracer/meter forward to the real providers once they are set globally."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: Any = None,
    ) -> None:
        self.injected = tracer_provider is not None or meter_provider is not None
        self.logger_provider = logger_provider  # None: the global one (evaluation events)
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
        self.requests = meter.create_counter(
            sc.REQUESTS, unit=sc.UNIT_REQUEST, description="NL2SQL requests by outcome (nl2sql.outcome)."
        )
        self.evaluations = meter.create_counter(
            sc.EVALUATIONS,
            unit=sc.UNIT_EVALUATION,
            description="Evaluations of NL2SQL answers (user feedback, SQL evaluators) by name and label.",
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


_instruments: Instruments | None = None


def get_instruments() -> Instruments:
    """The instruments of the current providers (built on first use)."""
    global _instruments
    if _instruments is None:
        _instruments = Instruments()
    return _instruments


def use_providers(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    logger_provider: Any = None,
) -> None:
    """Send this API's telemetry to these providers instead of the global ones (tests, or apps that
    keep their providers local). `use_providers()` with no arguments goes back to the globals."""
    global _instruments
    _instruments = (
        Instruments(tracer_provider, meter_provider, logger_provider)
        if tracer_provider or meter_provider or logger_provider
        else None
    )


def has_sdk() -> bool:
    """True when telemetry goes somewhere: providers were given to `use_providers`, or an SDK
    TracerProvider is installed globally."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    return (_instruments is not None and _instruments.injected) or isinstance(
        trace.get_tracer_provider(), SdkTracerProvider
    )
