"""Forensics benchmarks: scrubber throughput, span-exporter overhead, audit sinks, JSON log formatting,
the scrub CLI against the in-memory scrubber, and an hour of audit writing with retention.

Run: `.venv/bin/python benchmarks/bench_forensics.py` (or `make bench`). Prints one figure per line.
Numbers depend on the machine; the ratios (JSON vs text logs, clean vs dirty spans, CLI vs in-memory)
travel better. `BENCH_SCRUB_MB` (default 64) sets the scrub CLI's input size (the issue asks for
1024: about 10 minutes per pass on a 2-core machine); `BENCH_RETENTION_SECONDS` (default 3600) the
simulated time of the retention run; `BENCH_ONLY=scrub_cli,retention` runs only those parts.
"""

from __future__ import annotations

import io
import logging
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from nl2sql_observability.audit import AuditLog, AuditSettings, CallRecord
from nl2sql_observability.audit.events import build_event, event_from_record, format_timestamp
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
            record = CallRecord(
                0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, "acme", None, None, None,
                "gpt-4o-mini", "openai", "gpt-4o-mini", 500, 20, None, "ok", None, None, time.time(), 0.8125,
                event["prompt_text"], event["response_text"],
            )  # fmt: skip
            n, elapsed = _timeit(  # what the background writer does for each event
                lambda log=log, record=record: log.sink.write(event_from_record(record))  # type: ignore[union-attr]
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


# The CLI, reporting its own peak RSS (VmHWM: this process image only; `ru_maxrss` would include the
# parent's pages inherited at fork) to the file named by BENCH_RSS_FILE.
CLI = [
    sys.executable,
    "-c",
    "import atexit, os, re, sys\n"
    "def report():\n"
    "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "    open(os.environ['BENCH_RSS_FILE'], 'w').write(hwm)\n"
    "if os.environ.get('BENCH_RSS_FILE'): atexit.register(report)\n"
    "from nl2sql_observability.cli import main\n"
    "sys.exit(main())",
]


def _run_measured(args: list[str], **kwargs: object) -> tuple[int, float, float]:
    """Run the CLI; return (exit status, seconds, peak RSS in MB) of that process alone."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        proc = subprocess.run(args, env={**os.environ, "BENCH_RSS_FILE": rss.name}, check=False, **kwargs)  # type: ignore[call-overload]
        elapsed = time.perf_counter() - start
        peak_kb = int(rss.read() or 0)
    return proc.returncode, elapsed, peak_kb / 1024


def bench_scrub_cli() -> None:
    """`nl2sql-obs scrub` (streaming, windows with overlap) vs `Scrubber.scrub` on the whole text."""
    size_mb = int(os.environ.get("BENCH_SCRUB_MB", "64"))
    rng = random.Random(11)
    line_templates = [
        '{{"timestamp":"2026-11-24T08:{m:02d}:{s:02d}.123Z","level":"INFO","logger":"app.sql",'
        '"message":"node generate_sql done in {ms} ms","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",'
        '"tenant.id":"acme","rows":{rows}}}',
        "2026-11-24T08:{m:02d}:{s:02d}.456Z INFO app.http GET /api/query?page={rows} 200 {ms}ms",
        '{{"level":"WARNING","message":"slow query SELECT name, total FROM orders WHERE id = {rows}"}}',
    ]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "app.log"
        written = 0
        with open(src, "w", encoding="utf-8") as out:
            block = []
            while written < size_mb * 1024 * 1024:
                line = rng.choice(line_templates).format(
                    m=rng.randrange(60),
                    s=rng.randrange(60),
                    ms=rng.randrange(2000),
                    rows=rng.randrange(10**6),
                )
                if rng.random() < 0.01:
                    line += " " + rng.choice(DIRT)
                block.append(line + "\n")
                written += len(block[-1])
                if len(block) >= 10000:
                    out.write("".join(block))
                    block = []
            out.write("".join(block))
        megabytes = src.stat().st_size / 1024 / 1024
        status, cli_seconds, cli_rss = _run_measured(
            [*CLI, "scrub", str(src)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert status == 0, "nl2sql-obs scrub failed"
        text = src.read_text(encoding="utf-8")
        start = time.perf_counter()
        Scrubber().scrub(text)
        mem_seconds = time.perf_counter() - start
    print(
        f"scrub CLI, {megabytes:.0f} MB of log lines, 1% with secrets: {megabytes / cli_seconds:.2f} MB/s"
        f" (process start included, peak RSS {cli_rss:.0f} MB) vs in-memory scrubber"
        f" {megabytes / mem_seconds:.2f} MB/s: CLI/in-memory time ratio {cli_seconds / mem_seconds:.2f}x"
    )


RETENTION_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta, timezone
    from pathlib import Path
    from nl2sql_observability.audit.events import build_event, format_timestamp
    from nl2sql_observability.audit.sinks import JsonlFileSink, SqliteSink

    kind, path, writer, writers, rate, seconds, end_epoch = sys.argv[1:8]
    writer, writers, rate, seconds = int(writer), int(writers), float(rate), float(seconds)
    end = datetime.fromtimestamp(float(end_epoch), tz=timezone.utc)
    now = [end - timedelta(seconds=seconds)]
    clock = lambda: now[0]
    retention = timedelta(days=1)
    sink = (SqliteSink(Path(path), retention=retention, max_disk_bytes=int(sys.argv[9]), clock=clock)
            if kind == "sqlite" else
            JsonlFileSink(Path(path), retention=retention, max_disk_bytes=int(sys.argv[9]), clock=clock))
    prompts = sys.stdin.read().split("\\x00")
    start = end - timedelta(seconds=seconds)
    i = writer
    while True:
        now[0] = start + timedelta(seconds=i / rate)  # the simulated clock of this event
        if now[0] >= end:
            break
        sink.write(build_event(
            model="gpt-4o-mini", prompt_text=prompts[i % len(prompts)] + f" #{i}", response_text="SELECT 1",
            input_tokens=2000, output_tokens=20, latency_ms=800.0, status="ok", node="generate_sql",
            tenant_id="acme", trace_id=f"{i + 1:032x}", timestamp=format_timestamp(now[0]),
        ))
        i += writers
    sink.close()
    """
)


def bench_retention() -> None:
    """20 events/s with 8 KB prompts from 4 writer processes for a simulated hour, retention 1 day."""
    seconds = float(os.environ.get("BENCH_RETENTION_SECONDS", "3600"))
    rate, writers, cap = 20.0, 4, 1024**3
    rng = random.Random(5)
    prompts = "\x00".join(_prompt(rng, 8192, rng.random() < 0.3) for _ in range(64))
    for kind in ("file", "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ("events.db" if kind == "sqlite" else "events.log")
            end = datetime.now(timezone.utc)
            needle_trace = "feed" * 8
            setup = AuditLog(AuditSettings(sink=kind, path=path, retention=timedelta(days=1)))  # type: ignore[arg-type]
            assert setup.sink is not None
            for label, age in (("expired", timedelta(hours=25)), ("needle", timedelta(hours=23, minutes=59))):
                setup.sink.write(
                    build_event(
                        model="m",
                        prompt_text=f"{label} prompt",
                        response_text="r",
                        input_tokens=1,
                        output_tokens=1,
                        latency_ms=1.0,
                        status="error",
                        trace_id=needle_trace if label == "needle" else "dead" * 8,
                        timestamp=format_timestamp(end - age),
                    )
                )
            setup.close()
            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", RETENTION_WRITER, kind, str(path), str(w), str(writers), str(rate),
                     str(seconds), str(end.timestamp()), "-", str(cap)],
                    stdin=subprocess.PIPE,
                    text=True,
                )
                for w in range(writers)
            ]  # fmt: skip
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(prompts)
                proc.stdin.close()
            for proc in procs:
                assert proc.wait() == 0, "a writer failed"
            write_seconds = time.perf_counter() - start
            disk = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.is_file())
            events = int(seconds * rate)
            source = ["--sink", kind, "--path", str(path)]
            show = _run_measured(
                [*CLI, "audit", "show", "--trace-id", needle_trace, *source],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            expired = subprocess.run(
                [*CLI, "audit", "show", "--trace-id", "dead" * 8, *source], capture_output=True, check=False
            ).returncode
            search = _run_measured(
                [*CLI, "audit", "search", "--since", "24h", "--limit", "50", *source],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            print(
                f"audit {kind}: {events} events (8 KB prompts) from {writers} processes over a simulated"
                f" {seconds / 3600:.2f} h in {write_seconds:.0f} s ({events / write_seconds:.0f} events/s);"
                f" disk {disk / 1024 / 1024:.0f} MB (cap {cap / 1024 / 1024:.0f} MB)"
            )
            print(
                f"audit {kind}: event from 23h59m earlier {'FOUND' if show[0] == 0 else 'MISSING'} by"
                f" `audit show` ({show[1]:.2f} s, peak RSS {show[2]:.0f} MB); event from 25h earlier"
                f" {'deleted' if expired == 1 else 'STILL THERE'}; `audit search --since 24h --limit 50`:"
                f" {search[1]:.2f} s, peak RSS {search[2]:.0f} MB (exit {search[0]})"
            )


if __name__ == "__main__":
    logging.getLogger("nl2sql_observability").setLevel(logging.CRITICAL)
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
    for name, bench in (
        ("scrubber", bench_scrubber),
        ("span_exporter", bench_span_exporter),
        ("audit", bench_audit),
        ("logs", bench_logs),
        ("scrub_cli", bench_scrub_cli),
        ("retention", bench_retention),
    ):
        if not only or name in only:
            bench()
