"""The audit log against a wrong clock and other ordering traps: retention that one future-dated event
cannot stop, a search that finds what was written after the clock stepped back, events of the same
millisecond in write order, the SQLite write-ahead log inside the disk cap, eviction warnings at most
one a minute. Every time is relative to the test's clock (injected, or now): no date is hard-coded."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nl2sql_observability.audit import Filters
from nl2sql_observability.audit import retention as retention_module
from nl2sql_observability.audit.events import build_event, encode_line, format_timestamp, order_key
from nl2sql_observability.audit.sinks import JsonlFileSink, SqliteSink, rotated_paths
from nl2sql_observability.cli import main as cli_main

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _event(when: datetime, session: str, **overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "model": "fake-llm",
        "prompt_text": "Which customers spent most?",
        "response_text": "SELECT name FROM customers",
        "input_tokens": 1,
        "output_tokens": 1,
        "latency_ms": 1.0,
        "status": "ok",
        "trace_id": TRACE_ID,
        "session_id": session,
        "timestamp": format_timestamp(when),
    }
    fields.update(overrides)
    return build_event(**fields)  # type: ignore[arg-type]


def _rotated_file(path: Path, *events: dict[str, object]) -> None:
    path.write_bytes(b"".join(encode_line(e) for e in events))


def test_one_future_dated_event_does_not_stop_retention_of_newer_files(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    path = tmp_path / "events.log"
    # Oldest first: written while the clock was a year ahead, then 39, 35 and 10 days ago.
    _rotated_file(path.with_name("events.log.4"), _event(now + timedelta(days=365), "future"))
    _rotated_file(path.with_name("events.log.3"), _event(now - timedelta(days=39), "39d"))
    _rotated_file(path.with_name("events.log.2"), _event(now - timedelta(days=35), "35d"))
    _rotated_file(path.with_name("events.log.1"), _event(now - timedelta(days=10), "10d"))
    sink = JsonlFileSink(path, retention=timedelta(days=30), clock=_Clock(now))
    sink.write(_event(now, "now"))  # the first write checks retention
    sink.close()
    kept = sorted(str(e["session_id"]) for e in JsonlFileSink(path).query(Filters()))
    # The future-dated file was written before the 39-day-old one: it has outlived retention too.
    assert kept == ["10d", "now"]
    assert [p.name for p in rotated_paths(path)] == ["events.log.1", "events.log"]


def _write_across_a_step_back(path: Path, now: datetime) -> list[str]:
    """20 events every 5 minutes up to 40 minutes ago; then the clock steps back 50 minutes (to read
    90 minutes ago) and 19 events follow every 5 minutes up to now. Files of 6 events each, so that
    events after `--since 1h` lie in a file older than one whose first event is long before it.
    Returns every session id."""
    line_size = len(encode_line(_event(now, "before-00")))  # every event has this size
    sink = JsonlFileSink(path, max_bytes=6 * line_size)
    sessions = []
    for i in range(20):
        sessions.append(f"before-{i:02d}")
        sink.write(_event(now - timedelta(minutes=135 - 5 * i), sessions[-1]))
    for i in range(19):
        sessions.append(f"after-{i:02d}")
        sink.write(_event(now - timedelta(minutes=90 - 5 * i), sessions[-1]))
    sink.close()
    return sessions


def test_a_writer_starts_a_new_file_when_the_clock_stepped_back_whoever_wrote_last(
    tmp_path: Path,
) -> None:
    now = datetime.now(timezone.utc)
    path = tmp_path / "events.log"
    first, second = JsonlFileSink(path), JsonlFileSink(path)  # two writers, as two processes would be
    first.write(_event(now - timedelta(minutes=60), "first-before"))
    second.write(_event(now - timedelta(minutes=10), "second-before"))
    first.write(_event(now - timedelta(minutes=39), "first-after-a-30-minute-step-back"))
    first.close()
    second.close()
    for file in rotated_paths(path):
        stamps = [order_key(json.loads(line)) for line in file.read_text().splitlines()]
        assert max(stamps) <= stamps[-1] + timedelta(minutes=5), f"{file.name}: dated after its last line"
    since = format_timestamp(now - timedelta(minutes=15))
    found = JsonlFileSink(path).search(Filters(since=since), 10)
    assert [e["session_id"] for e in found] == ["second-before"]


def test_search_since_finds_events_written_before_the_clock_stepped_back(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    path = tmp_path / "events.log"
    sessions = _write_across_a_step_back(path, now)
    since = format_timestamp(now - timedelta(hours=1))
    expected = {
        str(e["session_id"]) for e in JsonlFileSink(path).query(Filters()) if str(e["timestamp"]) >= since
    }
    assert any(s.startswith("before-") for s in expected)  # the trap: older files, later timestamps
    found = JsonlFileSink(path).search(Filters(since=since), limit=1000)
    assert {str(e["session_id"]) for e in found} == expected
    assert len(expected) < len(sessions)


def test_cli_search_since_1h_after_a_step_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(timezone.utc)  # `--since 1h` is relative to the same clock
    path = tmp_path / "events.log"
    _write_across_a_step_back(path, now)
    assert cli_main(["audit", "search", "--since", "1h", "--limit", "1000", "--path", str(path)]) == 0
    shown = capsys.readouterr().out
    for i in range(16, 20):  # written 55 to 40 minutes ago, before the step
        assert f"session=before-{i:02d} " in shown


def test_search_limit_finds_the_latest_timestamps_after_a_step_back(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    path = tmp_path / "events.log"
    _write_across_a_step_back(path, now)
    everything = sorted(JsonlFileSink(path).query(Filters()), key=lambda e: str(e["timestamp"]))
    found = JsonlFileSink(path).search(Filters(), limit=5)
    assert [e["session_id"] for e in found] == [e["session_id"] for e in everything[-5:]]


def test_search_skips_files_too_old_by_their_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nl2sql_observability.audit import sinks

    now = datetime.now(timezone.utc)
    path = tmp_path / "events.log"
    sink = JsonlFileSink(path, max_bytes=3000)
    for i in range(300):
        sink.write(_event(now - timedelta(minutes=10 * (300 - i)), str(i)))
    sink.close()
    read: list[Path] = []
    original = sinks._read_events

    def counting(file: Path, *args: object, **kwargs: object) -> object:
        read.append(file)
        return original(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sinks, "_read_events", counting)
    found = JsonlFileSink(path).search(Filters(), 5)
    assert [e["session_id"] for e in found] == [str(i) for i in range(295, 300)]
    assert len(rotated_paths(path)) > 30
    assert len(read) <= 3, "search must skip files whose last event is too old to hold a better match"


@pytest.mark.parametrize("sink_kind", ["file", "sqlite"])
def test_events_of_the_same_millisecond_keep_their_write_order(
    tmp_path: Path, sink_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    when = datetime.now(timezone.utc)
    path = tmp_path / ("events.log" if sink_kind == "file" else "events.db")
    sink = JsonlFileSink(path) if sink_kind == "file" else SqliteSink(path)
    order = [f"step-{i}" for i in range(6)]
    for i, session in enumerate(order):
        event = _event(when, session)
        event["event_id"] = f"{15 - i:x}" * 32  # random ids sort any way: here against write order
        sink.write(event)
    sink.close()
    reader = JsonlFileSink(path) if sink_kind == "file" else SqliteSink(path)
    assert [e["session_id"] for e in reader.search(Filters(), 100)] == order
    assert [e["session_id"] for e in reader.search(Filters(), 3)] == order[-3:]
    assert [e["session_id"] for e in reader.query(Filters(trace_id=TRACE_ID))] == order
    assert cli_main(["audit", "show", "--trace-id", TRACE_ID, "--path", str(path)]) == 0
    shown = capsys.readouterr().out
    assert [shown.index(f"session={s} ") for s in order] == sorted(
        shown.index(f"session={s} ") for s in order
    )


def test_sqlite_write_ahead_log_counts_in_the_disk_cap(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    cap = 300_000
    clock = _Clock(datetime.now(timezone.utc) - timedelta(days=1))
    sink = SqliteSink(path, max_disk_bytes=cap, clock=clock)
    for i in range(1000):  # about 4 MB of events: far more than the cap
        clock.now += timedelta(seconds=61)  # every write checks the cap
        sink.write(_event(clock.now, str(i), prompt_text="schema " * 500))
    on_disk = sum(f.stat().st_size for f in tmp_path.iterdir() if f.name.startswith("events.db"))
    sink.close()
    assert on_disk <= cap + 64 * 1024, f"{on_disk} bytes on disk for a cap of {cap}"


def test_eviction_warnings_are_at_most_one_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = [1000.0]
    monkeypatch.setattr(retention_module, "_monotonic", lambda: ticks[0])
    monkeypatch.setattr(retention_module, "_last_logged", None)
    monkeypatch.setattr(retention_module, "_counter", _NullCounter())
    clock = _Clock(datetime.now(timezone.utc) - timedelta(days=1))
    sink = JsonlFileSink(tmp_path / "events.log", max_bytes=2000, max_disk_bytes=6000, clock=clock)
    with caplog.at_level(logging.WARNING, logger="nl2sql_observability.audit"):
        for i in range(200):  # every few writes rotate and evict
            clock.now += timedelta(seconds=1)
            ticks[0] += 0.01
            sink.write(_event(clock.now, str(i)))
        first = [r.getMessage() for r in caplog.records if "before their retention ran out" in r.getMessage()]
        ticks[0] += retention_module.EVICTION_LOG_INTERVAL_S
        sink.write(_event(clock.now, "after a minute", prompt_text="x" * 3000))
    sink.close()
    lines = [r.getMessage() for r in caplog.records if "before their retention ran out" in r.getMessage()]
    assert len(first) == 1
    assert len(lines) == 2
    assert "more events in" in lines[1]  # what was not logged in between is said, not lost


class _NullCounter:
    def add(self, amount: int, attributes: object = None) -> None:
        pass


def test_an_existing_group_writable_audit_directory_is_refused(tmp_path: Path) -> None:
    from nl2sql_observability.audit.sinks import AuditPathError

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o770)
    with pytest.raises(AuditPathError, match="writable by group or others"):
        JsonlFileSink(shared / "events.log").write(_event(datetime.now(timezone.utc), "x"))
    assert not (shared / "events.log").exists()
