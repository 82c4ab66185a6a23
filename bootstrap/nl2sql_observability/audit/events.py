"""Audit events: building (scrubbed, capped), serialising, filtering."""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from nl2sql_observability.callrecord import AuditRecord, CallRecord, FeedbackRecord, RequestRecord
from nl2sql_observability.context import is_valid_tenant_id
from nl2sql_observability.safetext import loads_bounded
from nl2sql_observability.scrubbing import get_scrubber

SCHEMA_VERSION = 1
# Contract field order (docs/telemetry-contract.md, "Audit event").
FIELDS = (
    "schema_version",
    "event_id",
    "timestamp",
    "trace_id",
    "span_id",
    "tenant_id",
    "user_id",
    "session_id",
    "node",
    "model",
    "prompt_text",
    "response_text",
    "tokens",
    "latency_ms",
    "status",
    "error_type",
    "error_message",
    "kind",
    "service_name",
    "outcome",
    "correction_attempts",
    "evaluation",
)
# `kind` of an event: one LLM call, the end of a request (its outcome), a feedback on a request.
KIND_LLM_CALL = "llm_call"
KIND_REQUEST = "request"
KIND_FEEDBACK = "feedback"
TEXT_FIELDS = ("prompt_text", "response_text", "error_message")
TRUNCATION_MARKER = "…[TRUNCATED: {n} more chars]"

AuditEvent = dict[str, Any]


def format_timestamp(when: datetime) -> str:
    """RFC 3339, UTC, milliseconds, `Z` — sortable as text (SQLite compares these as strings)."""
    utc = when.astimezone(timezone.utc)
    # Not strftime("%Y"): glibc does not zero-pad years before 1000, and the text must sort as the
    # instant does.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{utc.microsecond // 1000:03d}Z"
    )


_CANONICAL = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z\Z")
_EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc)


def instant(timestamp: object) -> datetime | None:
    """The instant a timestamp text names (UTC if it has no offset); None if it names none."""
    if not isinstance(timestamp, str):
        return None
    m = _CANONICAL.match(timestamp)
    try:
        if m:
            year, month, day, hour, minute, second, millis = (int(g) for g in m.groups())
            return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=timezone.utc)
        text = timestamp.strip()
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def order_key(event: AuditEvent) -> datetime:
    """Sort key of an event by its instant (an event with no readable timestamp sorts first)."""
    return instant(event.get("timestamp")) or _EARLIEST


def now_timestamp() -> str:
    return format_timestamp(datetime.now(timezone.utc))


def cap_text(text: str, limit: int) -> str:
    """Scrub, then cap at `limit` chars with a visible marker. Very long input is first cut at a
    whitespace boundary (secrets contain none), so the scrubbing cost stays bounded."""
    pre_cut = 4 * limit + 65536
    hidden = 0
    if len(text) > pre_cut:
        space = max(text.rfind(ws, pre_cut - 4096, pre_cut) for ws in " \n\t")
        cut = space if space > 0 else pre_cut
        hidden = len(text) - cut
        text = text[:cut]
    scrubbed = get_scrubber().scrub(text)
    if len(scrubbed) <= limit and not hidden:
        return scrubbed
    more = len(scrubbed) - min(limit, len(scrubbed)) + hidden
    return scrubbed[:limit] + TRUNCATION_MARKER.format(n=more)


def build_event(
    *,
    model: str,
    prompt_text: str,
    response_text: str,
    input_tokens: int | None,
    output_tokens: int | None,
    latency_ms: float,
    status: str,
    node: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    tenant_id: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    timestamp: str | None = None,
    text_max_chars: int = 16384,
) -> AuditEvent:
    scrub = get_scrubber().scrub

    def short(value: object) -> str | None:
        return None if value is None else scrub(str(value))[:1024]

    def tenant(value: str | None) -> str | None:
        # A tenant id the contract allows is a metric label as it is: the audit log shows it as it is.
        return value if is_valid_tenant_id(value) else short(value)

    total = (
        None if input_tokens is None and output_tokens is None else (input_tokens or 0) + (output_tokens or 0)
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "timestamp": timestamp or now_timestamp(),
        "trace_id": trace_id,
        "span_id": span_id,
        "tenant_id": tenant(tenant_id),
        "user_id": short(user_id),
        "session_id": short(session_id),
        "node": short(node),
        "model": short(model),
        "prompt_text": cap_text(str(prompt_text), text_max_chars),
        "response_text": cap_text(str(response_text), text_max_chars),
        "tokens": {"input": input_tokens, "output": output_tokens, "total": total},
        "latency_ms": round(float(latency_ms), 3),
        "status": status if status in ("ok", "error") else "error",
        "error_type": short(error_type),
        "error_message": None if error_message is None else cap_text(str(error_message), text_max_chars),
        "kind": KIND_LLM_CALL,
        "service_name": None,
        "outcome": None,
        "correction_attempts": None,
        "evaluation": None,
    }


def event_from_record(record: AuditRecord, *, text_max_chars: int = 16384) -> AuditEvent:
    """The audit event of one call, request end or feedback: its ids and fields, text scrubbed and capped."""
    if isinstance(record, RequestRecord):
        return _request_event(record)
    if isinstance(record, FeedbackRecord):
        return _feedback_event(record, text_max_chars)
    return _call_event(record, text_max_chars)


def _timestamp(end_time: float) -> str:
    return format_timestamp(datetime.fromtimestamp(end_time, timezone.utc))


def _request_event(record: RequestRecord) -> AuditEvent:
    event = build_event(
        model="",
        prompt_text="",
        response_text="",
        input_tokens=None,
        output_tokens=None,
        latency_ms=record.duration_s * 1000.0,
        status="error" if record.error_type is not None else "ok",
        error_type=record.error_type,
        trace_id=record.trace_id_hex,
        span_id=record.span_id_hex,
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        session_id=record.session_id,
        timestamp=_timestamp(record.end_time),
    )
    event.update(
        kind=KIND_REQUEST,
        model=None,
        prompt_text=None,
        response_text=None,
        service_name=record.service_name,
        outcome=record.outcome,
        correction_attempts=record.correction_attempts,
    )
    return event


def _feedback_event(record: FeedbackRecord, text_max_chars: int) -> AuditEvent:
    event = build_event(
        model="",
        prompt_text="",
        response_text=record.comment or "",
        input_tokens=None,
        output_tokens=None,
        latency_ms=0.0,
        status="ok",
        trace_id=record.trace_id,
        span_id=record.span_id,
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        session_id=record.session_id,
        timestamp=_timestamp(record.end_time),
        text_max_chars=text_max_chars,
    )
    event.update(
        kind=KIND_FEEDBACK,
        model=None,
        prompt_text=None,
        latency_ms=None,
        service_name=record.service_name,
        outcome=record.outcome,
        evaluation={
            "name": record.name,
            "score": record.score,
            "label": record.label,
            "negative": record.negative,
        },
    )
    if record.comment is None:
        event["response_text"] = None
    return event


def _call_event(record: CallRecord, text_max_chars: int) -> AuditEvent:
    return build_event(
        model=record.model,
        prompt_text=record.prompt_text,
        response_text=record.response_text,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        latency_ms=record.duration_s * 1000.0,
        status=record.status,
        node=record.node,
        error_type=record.error_type,
        error_message=record.error_message,
        trace_id=record.trace_id_hex,
        span_id=record.span_id_hex,
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        session_id=record.session_id,
        timestamp=format_timestamp(datetime.fromtimestamp(record.end_time, timezone.utc)),
        text_max_chars=text_max_chars,
    )


def encode_line(event: AuditEvent) -> bytes:
    """One JSON line. Lone surrogates become JSON `\\udXXX` escapes instead of failing to encode."""
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode(
        "utf-8", "backslashreplace"
    )


class CorruptEventError(ValueError):
    pass


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _as_count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_evaluation(value: object) -> dict[str, Any] | None:
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    score = value.get("score")
    return {
        "name": _as_text(value.get("name")),
        "score": score if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
        "label": _as_text(value.get("label")),
        "negative": value.get("negative") is True,
    }


def normalize_event(event: AuditEvent) -> AuditEvent:
    """An event as printers expect it, whatever a damaged or hand-edited store holds: text fields
    are text (bytes decoded with U+FFFD), `tokens` is {input, output, total} of integers or None."""
    out: AuditEvent = {}
    for key, value in event.items():
        if key == "tokens":
            tokens = value if isinstance(value, dict) else {}
            out[key] = {k: _as_count(tokens.get(k)) for k in ("input", "output", "total")}
        elif key == "evaluation":
            out[key] = _as_evaluation(value)
        elif key == "correction_attempts":
            out[key] = _as_count(value)
        elif key in ("schema_version", "latency_ms"):
            out[key] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        else:
            out[key] = _as_text(value) if not isinstance(value, (dict, list)) else json.dumps(value)
    return out


def decode_line(line: bytes | str) -> AuditEvent:
    try:
        event = loads_bounded(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptEventError(str(exc)) from None
    if not isinstance(event, dict) or "event_id" not in event or "timestamp" not in event:
        raise CorruptEventError("not an audit event (no event_id/timestamp)")
    return event


# --- filters ----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class FilterError(ValueError):
    pass


_WHEN_HELP = (
    "expected a duration ago such as 30m, 24h, 7d, 2w or an ISO 8601 time such as 2026-11-23 or"
    " 2026-11-23T14:00:00Z"
)


def parse_when(value: str, *, name: str, now: datetime | None = None) -> str:
    """`24h`, `30m`, `7d`, `2w`, `90s` (ago) or an ISO 8601 date/time (UTC if no offset) -> timestamp text."""
    now = now or datetime.now(timezone.utc)
    if not value.strip():
        raise FilterError(f"{name} {value!r} is empty: {_WHEN_HELP}")
    m = _DURATION.match(value)
    if m:
        try:
            return format_timestamp(now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()]))
        except (OverflowError, ValueError):
            raise FilterError(f"{name} {value!r} reaches before the year 1; use a shorter duration") from None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{name} {value!r}: {_WHEN_HELP}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        return format_timestamp(when)
    except (OverflowError, ValueError):
        raise FilterError(
            f"{name} {value!r} is out of range: use a time between the years 1 and 9999"
        ) from None


def shift_timestamp(timestamp: str, delta: timedelta) -> str:
    """Timestamp text moved by `delta` (unchanged if it cannot be parsed or leaves the calendar)."""
    try:
        return format_timestamp(datetime.fromisoformat(timestamp.replace("Z", "+00:00")) + delta)
    except (OverflowError, ValueError):
        return timestamp


def normalize_trace_id(value: str) -> str:
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if not _TRACE_ID.match(text) or text == "0" * 32:
        raise FilterError(f"--trace-id {value!r}: expected 32 hexadecimal characters (as shown in Jaeger)")
    return text


@dataclass(frozen=True)
class Filters:
    trace_id: str | None = None
    since: str | None = None
    until: str | None = None
    tenant: str | None = None
    node: str | None = None
    status: str | None = None
    limit: int | None = None
    kind: str | None = None
    outcome: str | None = None  # of the event's own record (`request`/`feedback` events)
    trace_ids: frozenset[str] | None = None  # one of these traces (the `--outcome` join)

    def match(self, event: AuditEvent) -> bool:
        return (
            (self.kind is None or (event.get("kind") or KIND_LLM_CALL) == self.kind)
            and (self.outcome is None or event.get("outcome") == self.outcome)
            and (self.trace_ids is None or event.get("trace_id") in self.trace_ids)
            and (self.trace_id is None or event.get("trace_id") == self.trace_id)
            and self.in_window(event.get("timestamp"))
            and (self.tenant is None or event.get("tenant_id") == self.tenant)
            and (self.node is None or event.get("node") == self.node)
            and (self.status is None or event.get("status") == self.status)
        )

    def in_window(self, timestamp: object) -> bool:
        """Whether the instant of `timestamp` lies within since/until (compared as instants, not as
        text); a timestamp naming no instant is outside every window."""
        if self.since is None and self.until is None:
            return True
        when = instant(timestamp)
        if when is None:
            return False
        return (self.since is None or when >= _bound(self.since)) and (
            self.until is None or when <= _bound(self.until)
        )


@functools.lru_cache(maxsize=64)
def _bound(timestamp: str) -> datetime:
    return instant(timestamp) or _EARLIEST
