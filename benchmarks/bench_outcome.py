"""Added cost per request of outcome tracking and row counting (issue 16), against the zero-code path
without it, in one run.

One process, one realistic request shape: the validator-loop pipeline of tests/unit/apps (a chat call
that generates SQL, a validator node, a node that runs the SQL on SQLite and fetches 20 rows), under the
zero-code instrumentor and the sqlite3 instrumentation, spans to a dropping batch exporter, the audit log
to a temporary file, the "request finished" record through a JSON log handler. Two modes, rounds
alternating between them:
- without: the zero-code path as before issue 16: no outcome tracker, no DB-API hooks for status codes,
  statements and rows (the `connection.execute` fix stays);
- with:    everything issue 16 adds on the request path: the tracker, the DB-API hooks (every fetch
  counted), the outcome on span and histogram, `nl2sql.requests`, the log record, the audit `request`
  record, the built-in evaluators off;
- with+evaluators: the same, plus the request's SQL handed to the background evaluators (sqlglot parses
  each distinct SQL text once; its CPU time competes for the GIL with this CPU-bound loop).
The figure is the median wall time per request; goal: with / without <= 1.05.
Run: `.venv/bin/python benchmarks/bench_outcome.py`.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

from apps import pipeline
from nl2sql_observability import evaluators, instrumentation, steps
from nl2sql_observability.audit import AuditLog, AuditSettings, set_audit_log
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
from nl2sql_observability.autoinstrument import dbapi as db_hooks
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from nl2sql_observability.logs import ContextJsonFormatter
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

# A different text per request, so the evaluators' parse cache does not hide their cost.
SQL = "SELECT id, status, amount FROM orders WHERE amount > -{n} ORDER BY id"
CONFIG = {"configurable": {"tenant_id": "acme", "thread_id": "t-1", "user_id": "u-1"}}


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Without:
    """The request path as before: no tracker, the DB-API hooks of issue 16 taken off."""

    def __enter__(self) -> None:
        self._tracker = steps.RequestOutcome
        steps.RequestOutcome = lambda: None  # type: ignore[assignment,misc,return-value]
        self._patched = []
        for owner, name, previous in db_hooks._restore:
            self._patched.append((owner, name, owner.__dict__.get(name)))
            if previous is None:
                delattr(owner, name)
            else:
                setattr(owner, name, previous)

    def __exit__(self, *exc: object) -> None:
        steps.RequestOutcome = self._tracker  # type: ignore[misc]
        for owner, name, patched in reversed(self._patched):
            setattr(owner, name, patched)


class _With:
    """Outcome tracking and row counting, the evaluators off."""

    def __enter__(self) -> None:
        evaluators.use_evaluators([])

    def __exit__(self, *exc: object) -> None:
        evaluators.use_evaluators(["sql_parses", "sql_read_only"])


class _WithEvaluators:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _db() -> Any:
    conn = pipeline.make_db()
    conn.executemany(
        "INSERT INTO orders (status, amount) VALUES (?, ?)", [("open", float(i)) for i in range(18)]
    )
    return conn


def _requests(app: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        app.invoke({"question": "List the orders"}, config=CONFIG)
        times.append(time.perf_counter() - start)
    return times


def main(requests: int = 300, rounds: int = 4) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=1_000_000))
    instrumentation.use_providers(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed at exit
    handler.setFormatter(ContextJsonFormatter(service_name="bench"))
    requests_log = logging.getLogger("nl2sql_observability.requests")
    requests_log.addHandler(handler)
    requests_log.setLevel(logging.INFO)
    requests_log.propagate = False
    Nl2sqlInstrumentor().instrument(settings=InstrumentorSettings())
    SQLite3Instrumentor().instrument(tracer_provider=tracer_provider)
    with tempfile.TemporaryDirectory() as tmp:
        set_audit_log(AuditLog(AuditSettings(path=Path(tmp) / "events.log")))
        conn = _db()
        modes: dict[str, Any] = {"without": _Without, "with": _With, "with+evaluators": _WithEvaluators}
        times: dict[str, list[float]] = {m: [] for m in modes}
        model = pipeline.GenericFakeChatModel(
            messages=pipeline.replies(*[SQL.format(n=n) for n in range(requests * rounds * 3 + 50)])
        )
        app = pipeline.build_pipeline(conn, model)
        _requests(app, 30)  # warm up
        for i in range(rounds):
            for mode in list(modes) if i % 2 == 0 else list(reversed(modes)):
                with modes[mode]():
                    times[mode] += _requests(app, requests)
        set_audit_log(None)
    median = {m: statistics.median(v) * 1e6 for m, v in times.items()}
    print(f"one request (chat + validator + SQLite query, 20 rows fetched), median of {rounds}x{requests}:")
    for m in modes:
        print(f"  {m:<16} {median[m]:8.1f} us")
    for m in ("with", "with+evaluators"):
        print(
            f"  {m} / without: {median[m] / median['without']:.3f}x"
            f" (goal for outcome tracking and row counting <= 1.05);"
            f" added {median[m] - median['without']:+.1f} us per request"
        )
    tracer_provider.shutdown()
    instrumentation.use_providers()


if __name__ == "__main__":
    main()
