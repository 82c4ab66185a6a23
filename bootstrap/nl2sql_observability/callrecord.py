"""The record of one LLM call: made once when the call ends, read by every sink.

The span's attributes, the metrics and the audit event are all made from this one immutable value;
none of them reads the run state back. A `NamedTuple` because it is built on the app's thread for
every call: immutable, typed, no reference cycles (the garbage collector never has to visit it
twice), and the cheapest record type CPython has.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["AuditRecord", "CallRecord", "FeedbackRecord", "RequestRecord", "Status"]

Status = Literal["ok", "error"]


class CallRecord(NamedTuple):
    """One finished LLM chat call (zero-code or explicit)."""

    trace_id: int  # 0: no span (telemetry off); formatted as 32 hex digits where shown
    span_id: int
    tenant_id: str | None  # passed the contract's pattern (`UserContext`): never scrubbed
    user_id: str | None
    session_id: str | None
    node: str | None
    model: str  # the requested model
    provider: str
    response_model: str  # the model that answered (the requested one when the reply does not say)
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None  # in `pricing.CURRENCY`; None: no usage reported or the model has no price
    status: Status
    error_type: str | None
    error_message: str | None
    end_time: float  # seconds since the epoch (time.time()) when the call ended
    duration_s: float
    prompt_text: str
    response_text: str

    @property
    def trace_id_hex(self) -> str | None:
        return format(self.trace_id, "032x") if self.trace_id else None

    @property
    def span_id_hex(self) -> str | None:
        return format(self.span_id, "016x") if self.span_id else None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


class RequestRecord(NamedTuple):
    """One finished request (a root workflow): its outcome, for the audit log's `request` record."""

    trace_id: int
    span_id: int  # the workflow span
    service_name: str
    tenant_id: str | None
    user_id: str | None
    session_id: str | None
    outcome: str
    error_type: str | None
    correction_attempts: int
    end_time: float
    duration_s: float

    @property
    def trace_id_hex(self) -> str | None:
        return format(self.trace_id, "032x") if self.trace_id else None

    @property
    def span_id_hex(self) -> str | None:
        return format(self.span_id, "016x") if self.span_id else None


class FeedbackRecord(NamedTuple):
    """One evaluation of a finished request (user feedback), for the audit log's `feedback` record.
    Ids, tenant and service are those of the rated request's `request` record."""

    trace_id: str  # 32 hex
    span_id: str | None  # the rated workflow span, 16 hex
    service_name: str | None
    tenant_id: str | None
    user_id: str | None
    session_id: str | None
    outcome: str | None
    name: str
    score: float | None
    label: str | None
    negative: bool
    comment: str | None
    end_time: float


AuditRecord = CallRecord | RequestRecord | FeedbackRecord
