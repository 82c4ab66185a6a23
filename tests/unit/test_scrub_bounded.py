"""Scrubbing in bounded time on hostile input, and idempotent as a fixed point."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nl2sql_observability.logs import ContextJsonFormatter
from nl2sql_observability.scrubbing import (
    MAX_TELEMETRY_CHARS,
    Scrubber,
    ScrubbingSpanExporter,
    ScrubConfigError,
    load_scrubber,
    set_scrubber,
)
from nl2sql_observability.settings import ConfigurationError, load_all
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

S = Scrubber()
PEM_FLOOD = "-----BEGIN PRIVATE KEY-----!"


@pytest.mark.parametrize(
    ("glued", "core"),
    [
        ("(415) 555-0132" * 8, "555-0132"),
        ("GB82WEST12345698765432" * 4, "WEST1234"),
        ("GB82 WEST 1234 5698 7654 32GB82 WEST 1234 5698 7654 32", "5698 7654"),
        ("+44 20 7946 0958+44 20 7946 0958", "7946 0958"),
    ],
)
def test_glued_values_are_all_redacted_and_scrubbing_is_a_fixed_point(glued: str, core: str) -> None:
    for text in (glued, "x " + glued + " y", ("pad " * 300_000) + glued):  # also above 1 MB
        once = S.scrub(text)
        assert core not in once
        assert S.scrub(once) == once


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["(415) 555-0132", "GB82WEST12345698765432", "4111111111111111", "a@b.co", " ", "x"]),
        max_size=12,
    ).map("".join)
)
def test_idempotent_on_glued_sequences(text: str) -> None:
    once = S.scrub(text)
    assert S.scrub(once) == once


# A hang guard, not a timing assertion: the linear rule needs about 1 s here, the old lazy 16 KB
# scan after every BEGIN about 50 s (12.6 s per MB).
@pytest.mark.timeout(30)
def test_the_private_key_rule_is_linear_on_repeated_begin_lines() -> None:
    flood = PEM_FLOOD * (4 * 1024 * 1024 // len(PEM_FLOOD))
    out = S.scrub(flood)
    assert "BEGIN" not in out
    assert out == "[REDACTED:private_key]!" * (len(flood) // len(PEM_FLOOD))


def test_a_key_is_still_redacted_up_to_its_end_line() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAKC\n-----END RSA PRIVATE KEY-----"
    assert S.scrub(f"a {pem} b {pem} c") == "a [REDACTED:private_key] b [REDACTED:private_key] c"


@pytest.mark.parametrize("pattern", ["(\\\\w+)\\\\1", "(?<=id=)\\\\d+", "secret(?!_santa)\\\\w+"])
def test_a_pattern_the_engine_cannot_run_in_linear_time_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    monkeypatch.setenv("OBSERVABILITY_SCRUB_EXTRA_PATTERNS", f'{{"acme": "{pattern}"}}')
    with pytest.raises(ScrubConfigError) as exc:
        load_scrubber()
    assert "OBSERVABILITY_SCRUB_EXTRA_PATTERNS: acme=" in str(exc.value)
    assert "cannot run in linear time" in str(exc.value)
    with pytest.raises(ConfigurationError) as startup:
        load_all()
    assert "acme=" in str(startup.value)


def test_nested_repeats_run_in_linear_time_on_re2() -> None:
    scrubber = Scrubber(extra_patterns=["(a+)+$"])
    assert scrubber.scrub("a" * 40 + "!") == "a" * 40 + "!"
    assert scrubber.scrub("x aaaa") == "x [REDACTED:custom]"
    hostile = "a" * 100_000 + "!"
    assert scrubber.scan_stats(hostile).searches <= 2  # one scan, not one per start position


def test_a_pattern_safe_at_start_up_stays_on_after_a_hostile_text(caplog: pytest.LogCaptureFixture) -> None:
    scrubber = Scrubber(extra_patterns={"acme": "ACME-(x|xx)+y"})
    hostile = "ACME-" + "x" * 100_000 + "!"
    with caplog.at_level(logging.ERROR, logger="nl2sql_observability.scrubbing"):
        assert scrubber.scrub(hostile) == hostile
        assert scrubber.scrub("ticket ACME-xxy") == "ticket [REDACTED:acme]"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "allow",
    [
        '[".*"]',
        '["[\\\\s\\\\S]+"]',
        '["\\\\S*"]',
        '["(?s).+"]',
        '[".{8,}"]',
        '["(?!hunter2).*"]',
        '["[a-z0-9]+"]',
    ],
)
def test_an_allow_list_entry_that_would_keep_secrets_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, allow: str
) -> None:
    monkeypatch.setenv("OBSERVABILITY_SCRUB_ALLOW", allow)
    with pytest.raises(ConfigurationError) as exc:
        load_all()
    assert "OBSERVABILITY_SCRUB_ALLOW" in str(exc.value)
    assert "matches secrets the scrubber must redact" in str(exc.value) or "linear time" in str(exc.value)


def test_a_narrow_allow_list_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVABILITY_SCRUB_ALLOW", '["test@example\\\\.com"]')
    assert load_scrubber().scrub("test@example.com jane@example.com") == "test@example.com [REDACTED:email]"


def test_huge_log_text_is_scrubbed_then_cut() -> None:
    set_scrubber(Scrubber())
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "huge %s", ("m" * 300_000,), None)
    record.__dict__["payload"] = PEM_FLOOD * 10_000  # 280 KB extra= field
    line = json.loads(ContextJsonFormatter(service_name="t").format(record))
    assert len(line["message"]) < MAX_TELEMETRY_CHARS + 100
    assert "TRUNCATED" in line["message"]
    assert len(line["payload"]) < MAX_TELEMETRY_CHARS + 100
    assert "BEGIN" not in line["payload"]


def test_huge_span_text_is_scrubbed_then_cut() -> None:
    set_scrubber(Scrubber())
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        span.set_attribute("prompt", "ask " * 100_000 + "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0")
    inner = InMemorySpanExporter()
    ScrubbingSpanExporter(inner).export([span])  # type: ignore[list-item]
    value = inner.get_finished_spans()[0].attributes["prompt"]  # type: ignore[index]
    assert isinstance(value, str)
    assert len(value) < MAX_TELEMETRY_CHARS + 100
    assert value.endswith("more chars]")
