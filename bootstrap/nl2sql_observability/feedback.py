"""Feedback on a finished request, from any process, any time later: `record_feedback(trace_id, ...)`.

The rated request is found by its `request` record in the audit log (the trace id the app returned is
all the caller needs); its tenant, workflow span id and service come from there, never from the caller.
One feedback is: a `gen_ai.evaluation.result` log-record event (OpenTelemetry GenAI conventions) whose
trace and span ids are the rated workflow span's, one `nl2sql.evaluations`, one audit `feedback` record.

The event and the counter are emitted with the rated service's `service.name` (and this process's own
`service.instance.id`), by providers kept per rated service: per-service feedback ratios count against
the service that answered, whichever process sends the feedback.
"""

from __future__ import annotations

import atexit
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nl2sql_observability import semconv as sc
from nl2sql_observability.errors import ConfigurationError

from .forksafe import ForkSafeLock

__all__ = [
    "Emitter",
    "FeedbackError",
    "FeedbackResult",
    "FeedbackSettings",
    "emit_evaluation",
    "load_feedback_settings",
    "record_feedback",
    "use_feedback_settings",
]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
_COMMENT_MAX = 4096
_CACHE_MAX = 8


class FeedbackError(ValueError):
    """Bad feedback input or an unknown trace: one line that says what is wrong and how to fix it."""


class FeedbackSettings(BaseSettings):
    """`OBSERVABILITY_FEEDBACK_*`: the score range, the labels, what counts as negative."""

    model_config = SettingsConfigDict(
        env_prefix="OBSERVABILITY_FEEDBACK_", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )
    score_min: float = 0.0
    score_max: float = 1.0
    labels: Annotated[tuple[str, ...], NoDecode] = ("thumbs_up", "thumbs_down")
    negative_labels: Annotated[tuple[str, ...], NoDecode] = ("thumbs_down",)
    negative_below: float = 0.5

    @field_validator("labels", "negative_labels", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in value if not isinstance(v, str) or not _NAME.match(v)]
        if bad:
            raise ValueError(
                f"label {bad[0]!r} is not allowed; use comma-separated names of letters, digits, _ . -"
            )
        return tuple(value)


def load_feedback_settings() -> FeedbackSettings:
    try:
        settings = FeedbackSettings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]).upper() if err["loc"] else "?"
        raise ConfigurationError(
            f"OBSERVABILITY_FEEDBACK_{field}={err.get('input')!r}: {err['msg']}"
        ) from None
    if not settings.score_min < settings.score_max:
        raise ConfigurationError(
            "OBSERVABILITY_FEEDBACK_SCORE_MIN must be below OBSERVABILITY_FEEDBACK_SCORE_MAX"
            f" (got {settings.score_min} and {settings.score_max})"
        )
    return settings


_pushed: FeedbackSettings | None = None


def use_feedback_settings(settings: FeedbackSettings | None) -> None:
    """The settings `load_all` read (None: read the environment on first use)."""
    global _pushed
    _pushed = settings


@dataclass(frozen=True)
class FeedbackResult:
    """What was recorded: the rated request's ids, tenant and service, and whether it counts as negative."""

    trace_id: str
    span_id: str | None
    tenant_id: str | None
    service_name: str | None
    outcome: str | None
    negative: bool


class Emitter:
    """The providers that speak for one rated service (its `service.name`, our instance id)."""

    def __init__(self, logger_provider: Any, meter_provider: Any, shutdown: Callable[[], Any]) -> None:
        self.logger = logger_provider.get_logger(sc.SCOPE_NAME)
        self.evaluations = meter_provider.get_meter(sc.SCOPE_NAME).create_counter(
            sc.EVALUATIONS, unit=sc.UNIT_EVALUATION, description="Evaluations of NL2SQL answers."
        )
        self.shutdown = shutdown


def _build_emitter(service_name: str) -> Emitter:
    from nl2sql_observability.configurator import build_telemetry
    from nl2sql_observability.exporter_settings import load_settings

    telemetry = build_telemetry(
        load_settings(),
        shutdown_on_exit=False,
        resource_attributes={sc.SERVICE_NAME: service_name, "service.instance.id": _INSTANCE_ID},
    )
    return Emitter(telemetry.logger_provider, telemetry.meter_provider, telemetry.shutdown)


_INSTANCE_ID = str(uuid.uuid4())
_emitters: dict[str, Emitter] = {}
_emitters_lock = ForkSafeLock()
# Tests and embedding apps replace this (e.g. with in-memory providers).
emitter_factory: Callable[[str], Emitter] = _build_emitter


def emitter_for(service_name: str) -> Emitter:
    with _emitters_lock:
        found = _emitters.get(service_name)
        if found is None:
            if len(_emitters) >= _CACHE_MAX:
                _emitters.pop(next(iter(_emitters))).shutdown()
            found = _emitters[service_name] = emitter_factory(service_name)
        return found


def shutdown_emitters() -> None:
    """Export what the feedback providers hold and shut them down (at exit; the CLI calls it)."""
    with _emitters_lock:
        emitters = list(_emitters.values())
        _emitters.clear()
    for emitter in emitters:
        emitter.shutdown()


atexit.register(shutdown_emitters)


def emit_evaluation(
    emitter: Emitter | None,
    *,
    trace_id: int,
    span_id: int,
    name: str,
    score: float | None,
    label: str | None,
    explanation: str | None,
    tenant_id: str | None,
    negative: bool,
) -> None:
    """One `gen_ai.evaluation.result` event in the context of span (`trace_id`, `span_id`), and one
    `nl2sql.evaluations`. Without an emitter: the global providers (the app's own evaluators)."""
    attributes: dict[str, Any] = {sc.GEN_AI_EVALUATION_NAME: name, sc.EVALUATION_NEGATIVE: negative}
    if score is not None:
        attributes[sc.GEN_AI_EVALUATION_SCORE_VALUE] = score
    if label is not None:
        attributes[sc.GEN_AI_EVALUATION_SCORE_LABEL] = label
    if explanation:
        from nl2sql_observability.scrubbing import scrub_capped

        attributes[sc.GEN_AI_EVALUATION_EXPLANATION] = scrub_capped(explanation)
    if tenant_id is not None:
        attributes[sc.TENANT_ID] = tenant_id
    span_context = trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
    )
    context: Context = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
    record = LogRecord(
        timestamp=time.time_ns(),
        context=context,
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        attributes=attributes,
        event_name=sc.GEN_AI_EVALUATION_RESULT,
    )
    metric_attributes = {
        sc.GEN_AI_EVALUATION_NAME: name,
        sc.EVALUATION_NEGATIVE: "true" if negative else "false",
    }
    if label is not None:
        metric_attributes[sc.GEN_AI_EVALUATION_SCORE_LABEL] = label
    if tenant_id is not None:
        metric_attributes[sc.TENANT_ID] = tenant_id
    if emitter is not None:
        emitter.logger.emit(record)
        emitter.evaluations.add(1, metric_attributes)
        return
    from opentelemetry._logs import get_logger

    from nl2sql_observability.instruments import get_instruments

    ins = get_instruments()
    get_logger(sc.SCOPE_NAME, logger_provider=ins.logger_provider).emit(record)
    ins.evaluations.add(1, metric_attributes)


def _check(
    settings: FeedbackSettings, name: str, score: float | None, label: str | None, comment: str | None
) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise FeedbackError(
            f"evaluation name {name!r} is not allowed:"
            " 1-64 letters, digits, '_', '.', '-' starting with a letter"
        )
    if score is None and label is None:
        raise FeedbackError("give a score, a label or both (e.g. --label thumbs_down or --score 0.2)")
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not settings.score_min <= score <= settings.score_max
    ):
        raise FeedbackError(
            f"score {score!r} is out of range: use a number from {settings.score_min:g}"
            f" to {settings.score_max:g} (OBSERVABILITY_FEEDBACK_SCORE_MIN/_MAX)"
        )
    if label is not None and label not in settings.labels:
        raise FeedbackError(
            f"label {label!r} is not allowed; allowed: {', '.join(settings.labels)}"
            " (OBSERVABILITY_FEEDBACK_LABELS)"
        )
    if comment is not None and (not isinstance(comment, str) or len(comment) > _COMMENT_MAX):
        raise FeedbackError(f"comment must be text of at most {_COMMENT_MAX} characters")


def _find_request(trace_id: str, audit_log: Any) -> dict[str, Any]:
    from nl2sql_observability.audit.events import KIND_REQUEST, Filters

    if audit_log is None or audit_log.sink is None:
        raise FeedbackError(
            "the audit log is off (OBSERVABILITY_AUDIT_ENABLED): feedback needs it to find the rated request"
        )
    audit_log.flush(5)  # a request of this process may still be queued
    try:
        # newest first, stopping at the first match: the file sink does not read older files
        found = audit_log.sink.search(Filters(trace_id=trace_id, kind=KIND_REQUEST), 1)
    except FileNotFoundError:
        found = []
    if not found:
        raise FeedbackError(
            f"no request with trace id {trace_id} in the audit log {audit_log.settings.resolved_path()}"
            " (check the id, and that OBSERVABILITY_AUDIT_PATH/_SINK name the app's audit log)"
        )
    request: dict[str, Any] = found[-1]
    return request


def record_feedback(
    trace_id: str,
    *,
    name: str = "user_feedback",
    score: float | None = None,
    label: str | None = None,
    comment: str | None = None,
    settings: FeedbackSettings | None = None,
    audit_log: Any = None,
) -> FeedbackResult:
    """Rate the request whose trace id is `trace_id` (32 hex digits, as the app returned it).

    Emits `gen_ai.evaluation.result` on the rated workflow span, counts `nl2sql.evaluations` and writes
    an audit `feedback` record; the tenant and service are the rated request's. Raises `FeedbackError`
    (nothing recorded) for a malformed or unknown trace id, a score out of range, a label not allowed."""
    from nl2sql_observability import audit
    from nl2sql_observability.audit.events import FilterError, normalize_trace_id
    from nl2sql_observability.callrecord import FeedbackRecord

    settings = settings or _pushed or load_feedback_settings()
    try:
        trace_hex = normalize_trace_id(str(trace_id))
    except FilterError:
        raise FeedbackError(
            f"trace id {trace_id!r} is malformed: expected 32 hexadecimal characters (as shown in Jaeger)"
        ) from None
    _check(settings, name, score, label, comment)
    audit_log = audit_log if audit_log is not None else audit.get_audit_log()
    request = _find_request(trace_hex, audit_log)
    negative = (label is not None and label in settings.negative_labels) or (
        score is not None and score < settings.negative_below
    )
    span_hex = request.get("span_id") if isinstance(request.get("span_id"), str) else None
    tenant = request.get("tenant_id") if isinstance(request.get("tenant_id"), str) else None
    service = request.get("service_name") if isinstance(request.get("service_name"), str) else None
    emit_evaluation(
        emitter_for(service or sc.DEFAULT_SERVICE_NAME),
        trace_id=int(trace_hex, 16),
        span_id=int(span_hex, 16) if span_hex else 0,
        name=name,
        score=float(score) if score is not None else None,
        label=label,
        explanation=comment,
        tenant_id=tenant,
        negative=negative,
    )
    audit_log.submit(
        FeedbackRecord(
            trace_id=trace_hex,
            span_id=span_hex,
            service_name=service,
            tenant_id=tenant,
            user_id=request.get("user_id"),
            session_id=request.get("session_id"),
            outcome=request.get("outcome"),
            name=name,
            score=float(score) if score is not None else None,
            label=label,
            negative=negative,
            comment=comment,
            end_time=time.time(),
        )
    )
    return FeedbackResult(trace_hex, span_hex, tenant, service, request.get("outcome"), negative)
