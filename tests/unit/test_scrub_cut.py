"""Scrub, then cut: a secret at or around any cut of any sink never leaks, whole or in part.

Sinks that cut text: log lines (JSON message and extra fields, the text format), OTel log records,
span names, attributes, event attributes and status descriptions (all at 32 KB), and the stream
scrubber's windows (`nl2sql-obs scrub`)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nl2sql_observability.logs import ContextJsonFormatter, ContextTextFormatter
from nl2sql_observability.scrubbing import (
    MAX_TELEMETRY_CHARS,
    Scrubber,
    ScrubbingSpanExporter,
    scrub_capped,
    scrub_stream,
    scrub_value_capped,
    set_scrubber,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

# (text put into the sink, the part of it that must never appear, even in part)
SECRETS = [
    ("password='correct horse battery staple'", "correct horse battery staple"),
    ("DSN postgresql://app:Tr0ub4dorXq3@db:5432/x", "Tr0ub4dorXq3"),
    ("key AKIAZ7Q2M4X9R1T5W8Y3 end", "AKIAZ7Q2M4X9R1T5W8Y3"),
    ("token sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0", "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0"),
    ("card 4929 7185 3062 4177 ok", "4929 7185 3062 4177"),
    ("mail q7z2.lw9x@mail-c4vb8.test", "q7z2.lw9x@mail-c4vb8.test"),
    ('{"api_key": "k9Q2mZ7xW4rT8vB1nC6y"}', "k9Q2mZ7xW4rT8vB1nC6y"),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nqh3Kp9Zr2Lw7Xc4Vb8Nn1Kk5Jj3Hh6Gg\n"
        "-----END PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    ),
]
FRAGMENT = 8  # no run of this many characters of a secret may survive


def _leaks(out: str, secret: str) -> bool:
    return any(secret[i : i + FRAGMENT] in out for i in range(max(1, len(secret) - FRAGMENT + 1)))


def _placed(cut: int, offset: int, text: str) -> str:
    """`text` starting `offset` characters before the cut (negative: after it), in plain filler."""
    start = max(0, cut - offset)
    return "w " * (start // 2) + " " * (start % 2) + text + " w" * 2000


def _json_message(text: str) -> str:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "%s", (text,), None)
    return json.loads(ContextJsonFormatter(service_name="t").format(record))["message"]  # type: ignore[no-any-return]


def _json_extra(text: str) -> str:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None)
    record.__dict__["payload"] = text
    return json.loads(ContextJsonFormatter(service_name="t").format(record))["payload"]  # type: ignore[no-any-return]


def _text_line(text: str) -> str:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "%s", (text,), None)
    return ContextTextFormatter().format(record)


def _otel_record_value(text: str) -> str:
    return str(scrub_value_capped({"body": [text]})["body"][0])


def _span_texts(text: str) -> str:
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span(text) as span:
        span.set_attribute("prompt", text)
        span.add_event("e", {"exception.message": text})
        span.set_status(Status(StatusCode.ERROR, text))
    inner = InMemorySpanExporter()
    ScrubbingSpanExporter(inner).export([span])  # type: ignore[list-item]
    out = inner.get_finished_spans()[0]
    attributes, event = out.attributes or {}, out.events[0].attributes or {}
    texts = [out.name, attributes["prompt"], event["exception.message"], out.status.description or ""]
    return "\n".join(str(t) for t in texts)


SINKS: dict[str, Callable[[str], str]] = {
    "scrub_capped": scrub_capped,
    "json_message": _json_message,
    "json_extra": _json_extra,
    "text_line": _text_line,
    "otel_log_record": _otel_record_value,
    "span": _span_texts,
}


@pytest.fixture(autouse=True)
def _builtin_scrubber() -> Iterator[None]:
    set_scrubber(Scrubber())
    yield
    set_scrubber(None)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    sink=st.sampled_from(sorted(SINKS)),
    secret=st.sampled_from(SECRETS),
    offset=st.integers(min_value=-4, max_value=160),
)
def test_no_secret_leaks_at_or_around_the_cut(sink: str, secret: tuple[str, str], offset: int) -> None:
    text, core = secret
    placed = _placed(MAX_TELEMETRY_CHARS, min(offset, len(text) + 4), text)
    out = SINKS[sink](placed)
    assert not _leaks(out, core)
    assert "TRUNCATED" in out


@pytest.mark.parametrize("sink", sorted(SINKS))
@pytest.mark.parametrize(("text", "core"), SECRETS)
def test_every_cut_position_across_each_secret(sink: str, text: str, core: str) -> None:
    for offset in range(0, len(text) + 1):
        out = SINKS[sink](_placed(MAX_TELEMETRY_CHARS, offset, text))
        assert not _leaks(out, core), offset


def test_the_cut_keeps_a_replaced_region_whole_and_says_how_much_was_cut() -> None:
    text = "x" * (MAX_TELEMETRY_CHARS - 5) + " sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0 " + "y" * 100
    out = scrub_capped(text)
    assert out == "x" * (MAX_TELEMETRY_CHARS - 5) + " [REDACTED:openai_api_key]…[TRUNCATED: 101 more chars]"


@settings(max_examples=40, deadline=None)
@given(secret=st.sampled_from(SECRETS), offset=st.integers(min_value=0, max_value=120))
def test_no_secret_leaks_at_a_stream_window_cut(secret: tuple[str, str], offset: int) -> None:
    text, core = secret
    source = _placed(1000, min(offset, len(text) + 4), text) * 3
    out = "".join(scrub_stream(Scrubber(), io.StringIO(source), window_chars=1000))
    assert not _leaks(out, core)
