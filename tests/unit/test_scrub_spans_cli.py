"""ScrubbingSpanExporter (attributes, sequences, events, links, status; clean spans pass untouched)
and `nl2sql-obs scrub` (streams stdin -> stdout, bad settings -> clear error)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from nl2sql_observability.scrubbing import ScrubbingSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status, StatusCode

SECRET = "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0"


class _Capture(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _provider(inner: _Capture, **limits: int) -> TracerProvider:
    provider = TracerProvider(span_limits=SpanLimits(**limits) if limits else None)
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(inner)))
    return provider


def test_attributes_events_links_and_status_are_scrubbed() -> None:
    inner = _Capture()
    tracer = _provider(inner).get_tracer("t")
    other = tracer.start_span("other")
    other.end()
    with tracer.start_as_current_span(
        "chat", links=[Link(other.get_span_context(), {"note": "from jane@example.com"})]
    ) as span:
        span.set_attribute("db.statement", "SELECT * FROM users WHERE email = 'jane@example.com'")
        span.set_attribute("tags", ["ok", f"key={SECRET}"])
        span.set_attribute("gen_ai.usage.input_tokens", 12)
        span.set_attribute("flags", [True, False])
        try:
            raise PermissionError(f"401 for {SECRET}")
        except PermissionError as exc:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"denied for {SECRET}"))
    exported = inner.spans[-1]
    assert exported.attributes is not None
    assert exported.attributes["db.statement"] == "SELECT * FROM users WHERE email = '[REDACTED:email]'"
    assert exported.attributes["tags"] == ("ok", "key=[REDACTED:openai_api_key]")
    assert exported.attributes["gen_ai.usage.input_tokens"] == 12
    assert exported.attributes["flags"] == (True, False)
    (event,) = exported.events
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "401 for [REDACTED:openai_api_key]"
    assert SECRET not in str(event.attributes["exception.stacktrace"])
    assert exported.status.description == "denied for [REDACTED:openai_api_key]"
    assert exported.links[0].attributes == {"note": "from [REDACTED:email]"}
    assert exported.context == span.get_span_context()
    assert exported.parent == span.parent
    assert exported.resource is span.resource  # type: ignore[attr-defined]


def test_a_span_with_nothing_to_scrub_is_passed_through_as_is() -> None:
    inner = _Capture()
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("node generate_sql") as span:
        span.set_attribute("nl2sql.node.name", "generate_sql")
        span.set_attribute("db.statement", "SELECT password_hash FROM users WHERE id = 42")
        span.add_event("retry", {"attempt": 2})
    exporter = ScrubbingSpanExporter(inner)
    exporter.export([span])  # type: ignore[list-item]
    assert inner.spans[0] is span


def test_dropped_counts_survive_the_copy() -> None:
    inner = _Capture()
    tracer = _provider(inner, max_span_attributes=2, max_events=1).get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        span.set_attribute("a", "x")
        span.set_attribute("b", "y")
        span.set_attribute("c", "z")
        span.add_event("e1")
        span.add_event("e2", {"m": "jane@example.com"})
    exported = inner.spans[-1]
    assert exported.events[0].attributes == {"m": "[REDACTED:email]"}  # so the span was copied
    assert exported.attributes == {"b": "y", "c": "z"}  # unchanged, but the span was copied for its event
    assert exported.dropped_attributes == 1
    assert exported.dropped_events == 1


def _scrub_cli(
    stdin: bytes, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from nl2sql_observability.cli import main; sys.exit(main())"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OBSERVABILITY_SCRUB_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, "scrub", *args],
        input=stdin,
        capture_output=True,
        check=False,
        env=full_env,
        timeout=120,
    )


def test_scrub_cli_streams_large_input_and_keeps_everything_else() -> None:
    line = b"SELECT password_hash FROM users WHERE id = 42; -- trace 4bf92f3577b34da6a3ce929d0e0e4736\n"
    secret_block = b"mail jane@example.com key " + SECRET.encode() + b" from 203.0.113.54\r\n"
    data = (line * 500 + secret_block) * 40 + b"\xff\xfe not utf-8 \n" + b"no newline at the end"
    proc = _scrub_cli(data)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert SECRET.encode() not in out
    assert b"jane@example.com" not in out
    assert b"203.0.113.54" not in out
    assert out.count(line) == 500 * 40
    assert out.count(b"[REDACTED:openai_api_key]") == 40
    assert out.count(b"\r\n") == 40  # line endings kept
    assert out.endswith(b"\xff\xfe not utf-8 \nno newline at the end")  # undecodable bytes pass through


def test_scrub_cli_options_and_bad_settings() -> None:
    assert _scrub_cli(b"ip 203.0.113.54\n", "--no-ip").stdout == b"ip 203.0.113.54\n"
    bad = _scrub_cli(b"x\n", env={"OBSERVABILITY_SCRUB_EXTRA_PATTERNS": '["ACME-("]'})
    assert bad.returncode == 2
    assert b"OBSERVABILITY_SCRUB_EXTRA_PATTERNS" in bad.stderr
    assert b"not a valid regular expression" in bad.stderr
    assert b"Traceback" not in bad.stderr
    custom = _scrub_cli(
        b"customer ACME-123456\n", env={"OBSERVABILITY_SCRUB_EXTRA_PATTERNS": '{"acme_id": "ACME-\\\\d{6}"}'}
    )
    assert custom.stdout == b"customer [REDACTED:acme_id]\n"
    missing = _scrub_cli(b"", "/nonexistent/file.txt")
    assert missing.returncode == 2
    assert b"cannot read /nonexistent/file.txt" in missing.stderr
