"""Forensics benchmarks: scrubber throughput, span-exporter overhead, audit sinks, JSON log formatting.

Run: `.venv/bin/python benchmarks/bench_forensics.py` (or `make bench`). Prints one figure per line.
Numbers depend on the machine; the ratios (JSON vs text logs, clean vs dirty spans) travel better.
"""

from __future__ import annotations

import io
import logging
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nl2sql_observability.audit import AuditLog, AuditSettings
from nl2sql_observability.audit.events import build_event
from nl2sql_observability.logs import ContextJsonFormatter
from nl2sql_observability.scrubbing import Scrubber, ScrubbingSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

SCHEMA = (
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, country TEXT, created_at DATE);\n"
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), "
    "total NUMERIC(12,2), status TEXT, ordered_at TIMESTAMP);\n"
    "CREATE TABLE users (id INTEGER, password_hash TEXT, api_key_id INTEGER);\n"
)
QUESTION_WORDS = (
    "show",
    "me",
    "the",
    "top",
    "10",
    "customers",
    "by",
    "revenue",
    "in",
    "Q3",
    "2026",
    "for",
    "region",
    "EMEA",
    "with",
    "orders",
    "above",
    "1,234.56",
    "grouped",
    "by",
    "month",
    "since",
    "2026-01-01",
    "excluding",
    "refunds",
    "version",
    "1.45.1",
    "trace",
    "4bf92f3577b34da6a3ce929d0e0e4736",
)
DIRT = [
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789",
    "password=hunter2",
    "203.0.113.54",
]


def _prompt(rng: random.Random, size: int, dirty: bool) -> str:
    parts = ["You translate questions to SQL for this schema:\n", SCHEMA, "Question: "]
    length = sum(len(p) for p in parts)
    while length < size:
        word = rng.choice(DIRT) if dirty and rng.random() < 0.02 else rng.choice(QUESTION_WORDS)
        parts.append(word + (" " if rng.random() < 0.9 else "\n"))
        length += len(parts[-1])
    return "".join(parts)[:size]


def _timeit(fn: Callable[[], object], *, min_seconds: float = 1.0) -> tuple[int, float]:
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n, elapsed


def bench_scrubber() -> None:
    rng = random.Random(7)
    scrubber = Scrubber()
    for dirty in (False, True):
        prompts = [_prompt(rng, 4096, dirty) + f" #{i}" for i in range(400)]
        it = iter(prompts * 1000)
        n, elapsed = _timeit(lambda it=it: scrubber.scrub(next(it)))
        label = "with PII/secrets" if dirty else "clean"
        print(
            f"scrubber, 4 KB prompts ({label}): {n * 4.1 / 1024 / elapsed:6.2f} MB/s"
            f" ({elapsed / n * 1e3:.2f} ms each)"
        )
    big = _prompt(rng, 1 << 20, True)
    n, elapsed = _timeit(lambda: scrubber.scrub(big), min_seconds=2.0)
    print(f"scrubber, 1 MB text (with PII/secrets): {n / elapsed:6.2f} MB/s")
    short = [f"SELECT name FROM customers WHERE id = {i}" for i in range(100)]
    it2 = iter(short * 100000)
    n, elapsed = _timeit(lambda: scrubber.scrub(next(it2)))
    print(f"scrubber, short repeated strings (cached): {elapsed / n * 1e6:.2f} µs each")


class _Null(SpanExporter):
    def export(self, spans: Sequence[object]) -> SpanExportResult:  # type: ignore[override]
        return SpanExportResult.SUCCESS


def bench_span_exporter() -> None:
    tracer = TracerProvider().get_tracer("bench")
    clean, dirty = [], []
    for i in range(512):
        with tracer.start_as_current_span(f"node generate_sql {i % 5}") as span:
            span.set_attribute("nl2sql.node.name", "generate_sql")
            span.set_attribute("tenant.id", "acme")
            span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            span.set_attribute("db.statement", f"SELECT name FROM customers WHERE id = {i}")
            span.set_attribute("gen_ai.usage.input_tokens", 120)
        clean.append(span)
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attribute("db.statement", f"SELECT * FROM users WHERE email = 'u{i}@example.com'")
            span.record_exception(RuntimeError(f"401 for key sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz{i:010d}"))
            span.set_status(Status(StatusCode.ERROR, f"token sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz{i:010d}"))
        dirty.append(span)
    raw = _Null()
    wrapped = ScrubbingSpanExporter(_Null())
    for label, spans in (("nothing to scrub", clean), ("secrets in attributes/events/status", dirty)):
        n0, e0 = _timeit(lambda spans=spans: raw.export(spans))
        n1, e1 = _timeit(lambda spans=spans: wrapped.export(spans))
        per_span = (e1 / n1 - e0 / n0) / len(spans) * 1e6
        print(f"ScrubbingSpanExporter overhead, {label}: {per_span:.2f} µs/span")


def bench_audit() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        event = build_event(
            model="gpt-4o-mini",
            prompt_text=_prompt(random.Random(1), 2048, False),
            response_text="SELECT name FROM customers ORDER BY total DESC LIMIT 10",
            input_tokens=500,
            output_tokens=20,
            latency_ms=812.5,
            status="ok",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            tenant_id="acme",
        )
        for sink in ("file", "sqlite"):
            path = Path(tmp) / ("events.db" if sink == "sqlite" else "events.log")
            log = AuditLog(AuditSettings(sink=sink, path=path, max_bytes=5 * 1024 * 1024))  # type: ignore[arg-type]
            assert log.sink is not None
            counter = iter(range(10**9))
            n, elapsed = _timeit(
                lambda log=log, c=counter: log.sink.write(dict(event, event_id=f"e{next(c)}"))  # type: ignore[union-attr]
            )
            print(f"audit sink {sink}: {n / elapsed:8.0f} events/s (write only, 2 KB prompt)")
            n, elapsed = _timeit(
                lambda log=log: log.record(
                    model="gpt-4o-mini",
                    prompt_text=event["prompt_text"],
                    response_text=event["response_text"],
                    input_tokens=500,
                    output_tokens=20,
                    latency_ms=812.5,
                    status="ok",
                )
            )
            print(f"audit sink {sink}: {n / elapsed:8.0f} events/s (build + scrub + write)")
            log.close()


def bench_logs() -> None:
    record_args = (
        "app.orders",
        logging.INFO,
        "app.py",
        1,
        "order %s for tenant %s shipped",
        ("o-42", "acme"),
        None,
    )
    record = logging.LogRecord(*record_args)
    record.__dict__.update({"order_id": "o-42", "amount": 1234.56})
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    json_fmt = ContextJsonFormatter(service_name="nl2sql")
    sink = io.StringIO()

    def emit(fmt: logging.Formatter) -> None:
        sink.write(fmt.format(record) + "\n")
        if sink.tell() > 1 << 20:
            sink.seek(0)
            sink.truncate()

    n_text, e_text = _timeit(lambda: emit(text))
    n_json, e_json = _timeit(lambda: emit(json_fmt))
    rate_text, rate_json = n_text / e_text, n_json / e_json
    print(f"log lines: stdlib text {rate_text:8.0f}/s, JSON (context + scrub) {rate_json:8.0f}/s")
    print(f"log lines: JSON/text cost ratio {rate_text / rate_json:.2f}x")


if __name__ == "__main__":
    logging.getLogger("nl2sql_observability").setLevel(logging.CRITICAL)
    bench_scrubber()
    bench_span_exporter()
    bench_audit()
    bench_logs()
