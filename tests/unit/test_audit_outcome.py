"""The audit log's request and feedback records in the SQLite sink: an older database (without the new
columns) is read as it is and gains them when written; `--outcome` joins on the trace id."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from nl2sql_observability.audit.events import Filters, event_from_record, format_timestamp
from nl2sql_observability.audit.sinks import SqliteSink
from nl2sql_observability.callrecord import RequestRecord
from nl2sql_observability.cli import main

OLD_SCHEMA = """
CREATE TABLE audit_events (
    schema_version INTEGER NOT NULL, event_id TEXT PRIMARY KEY, timestamp TEXT NOT NULL, trace_id TEXT,
    span_id TEXT, tenant_id TEXT, user_id TEXT, session_id TEXT, node TEXT, model TEXT, prompt_text TEXT,
    response_text TEXT, input_tokens INTEGER, output_tokens INTEGER, total_tokens INTEGER, latency_ms REAL,
    status TEXT, error_type TEXT, error_message TEXT
);
"""
TRACE = "ab" * 16


def _request(trace_id: int, outcome: str) -> RequestRecord:
    return RequestRecord(trace_id, 7, "svc", "acme", "u", "s", outcome, None, 0, time.time(), 0.1)


def test_an_older_database_is_read_and_then_migrated(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(  # an LLM call written before the kinds, a minute ago (the test's clock)
            "INSERT INTO audit_events VALUES (1, 'e1', ?, ?, 'bb', 'acme', NULL, NULL, 'generate_sql', 'gpt',"
            " 'DROP it', 'DROP TABLE x', 1, 2, 3, 5.0, 'ok', NULL, NULL)",
            (format_timestamp(datetime.now(timezone.utc) - timedelta(minutes=1)), TRACE),
        )
    reader = SqliteSink(path)
    (old,) = list(reader.query(Filters()))
    assert old["kind"] is None  # an LLM call event from before the kinds
    assert list(reader.query(Filters(kind="llm_call"))) == [old]
    reader.close()
    writer = SqliteSink(path)
    trace = int(TRACE, 16)
    writer.write(event_from_record(_request(trace, "validation_rejected")))
    writer.close()
    assert main(["audit", "search", "--outcome", "validation_rejected", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert "DROP it" in out  # the prompt behind the rejected request, found through its trace id
    assert "kind=request" in out
    assert "outcome=validation_rejected" in out
    assert main(["audit", "search", "--outcome", "answered", "--path", str(path)]) == 1
