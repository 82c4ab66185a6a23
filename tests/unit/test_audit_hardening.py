"""Audit log under hostile conditions: owner-only files, readers that see every event while writers
rotate, bounded memory, age-based retention with a disk cap, one clear message for any bad input."""

from __future__ import annotations

import logging
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nl2sql_observability.audit import AuditLog, AuditSettings, Filters
from nl2sql_observability.audit.events import build_event, encode_line, format_timestamp
from nl2sql_observability.audit.sinks import JsonlFileSink, SqliteSink, rotated_paths
from nl2sql_observability.cli import main as cli_main
from nl2sql_observability.settings import ConfigurationError, load_all

CLI = "import sys; from nl2sql_observability.cli import main; sys.exit(main())"

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _event(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "model": "fake-llm",
        "prompt_text": "Which customers spent most?",
        "response_text": "SELECT name FROM customers ORDER BY spent DESC LIMIT 10",
        "input_tokens": 12,
        "output_tokens": 20,
        "latency_ms": 41.5,
        "status": "ok",
        "node": "generate_sql",
        "trace_id": TRACE_ID,
        "tenant_id": "acme",
    }
    fields.update(overrides)
    return build_event(**fields)  # type: ignore[arg-type]


def _days_ago(days: float) -> datetime:
    """A start time relative to the test's clock: no test may depend on today's date."""
    return datetime.now(timezone.utc) - timedelta(days=days)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_database_and_its_wal_and_shm_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "events.db"
    log = AuditLog(AuditSettings(sink="sqlite", path=path))
    assert log.sink is not None
    log.sink.write(_event())
    files = [path, path.with_name("events.db-wal"), path.with_name("events.db-shm")]
    assert all(f.exists() for f in files)
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert _mode(path.parent) == 0o700
    log.close()


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    log = AuditLog(AuditSettings(sink="sqlite", path=path))
    assert log.sink is not None
    log.sink.write(_event())
    assert _mode(path) == 0o600
    log.close()


# --- readers ---------------------------------------------------------------------------------

READER_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from nl2sql_observability.audit.events import build_event, encode_line
    from nl2sql_observability.audit.sinks import JsonlFileSink

    sink = JsonlFileSink(Path(sys.argv[1]), max_bytes=20_000)
    base = build_event(model="m", prompt_text="p" * 300, response_text="r", input_tokens=1, output_tokens=1,
                       latency_ms=1.0, status="ok")
    for seq in range(int(sys.argv[2])):
        sink.write_line(encode_line(dict(base, event_id=f"e{seq}", session_id=str(seq))))
    """
)


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_reader_sees_every_event_while_writers_rotate(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    writer = subprocess.Popen([sys.executable, "-c", READER_WRITER, str(path), "40000"])
    try:
        _wait_for(lambda: len(rotated_paths(path)) > 5, what="rotations")
        reads = 0
        while writer.poll() is None and reads < 30:
            seqs = sorted(int(e["session_id"]) for e in JsonlFileSink(path).query(Filters()))
            assert seqs == list(range(seqs[-1] + 1)), "a reader missed or duplicated events during a rotation"
            reads += 1
        assert reads > 3, "the writer finished before the reader could race it; write more events"
    finally:
        writer.kill()
        writer.wait()


def test_rotated_files_are_found_by_listing_not_by_the_readers_backup_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.log"
    sink = JsonlFileSink(path, max_bytes=3000)  # written with no count limit: many rotated files
    for i in range(200):
        sink.write(_event(session_id=str(i)))
    sink.close()
    assert len(rotated_paths(path)) > 20
    monkeypatch.setenv("OBSERVABILITY_AUDIT_BACKUP_COUNT", "5")  # the reader's own setting is irrelevant
    assert cli_main(["audit", "search", "--limit", "100000", "--json", "--path", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 200


def test_search_reads_only_the_newest_files_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nl2sql_observability.audit import sinks

    path = tmp_path / "events.log"
    sink = JsonlFileSink(path, max_bytes=3000)
    start = _days_ago(3)  # 300 events, 10 minutes apart: all inside the 30-day retention
    for i in range(300):
        sink.write(_event(session_id=str(i), timestamp=format_timestamp(start + timedelta(minutes=10 * i))))
    sink.close()
    files = rotated_paths(path)
    read: list[Path] = []
    original = sinks._read_events

    def counting(file: Path, *args: object) -> Iterator[dict[str, object]]:
        read.append(file)
        return original(file, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(sinks, "_read_events", counting)
    found = JsonlFileSink(path).search(Filters(), 5)
    assert [e["session_id"] for e in found] == [str(i) for i in range(295, 300)]
    assert len(files) > 30
    assert len(read) <= 3, "search must stop at files too old to hold a better match"


def test_sqlite_search_pushes_the_limit_into_sql(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    start = _days_ago(1)
    for i in range(50):
        sink.write(_event(session_id=str(i), timestamp=format_timestamp(start + timedelta(seconds=i))))
    statements: list[str] = []
    reader = SqliteSink(path)
    reader._connect(create=False).set_trace_callback(statements.append)
    found = reader.search(Filters(), 3)
    assert [e["session_id"] for e in found] == ["47", "48", "49"]
    assert any("LIMIT" in s for s in statements)
    reader.close()
    sink.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--since", "99999999d"], "--since '99999999d' reaches before the year 1"),
        (["search", "--since", "0001-01-01T00:00:00+05:00"], "is out of range"),
        (["search", "--until", "9999-12-31T23:59:59-05:00"], "is out of range"),
        (["search", "--since", ""], "--since '' is empty"),
        (["search", "--path", "{dir}"], "is a directory"),
    ],
)
def test_bad_input_is_one_message_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    log = tmp_path / "events.log"
    JsonlFileSink(log).write(_event())
    args = [a.format(dir=tmp_path) for a in args]
    if "--path" not in args:
        args += ["--path", str(log)]
    assert cli_main(["audit", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_damaged_lines_are_shown_or_reported_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "events.log"
    good = encode_line(_event(session_id="good"))
    tokens_text = encode_line(dict(_event(session_id="tokens"), tokens="12/20/32"))
    not_utf8 = encode_line(_event(session_id="latin")).replace(b"Which", b"Wh\xefch")
    log.write_bytes(good + tokens_text + not_utf8)
    for extra in ([], ["--json"]):
        assert cli_main(["audit", "search", "--path", str(log), *extra]) == 0
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        assert captured.out.count("Which customers") + captured.out.count("Wh\ufffdch") == 3
        assert "line 3: not valid UTF-8" in captured.err


def test_a_sqlite_row_with_binary_text_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    sink.write(_event())
    sink.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE audit_events SET prompt_text = ?, model = ?", (b"\xff\xfe binary", b"m\x80"))
    conn.commit()
    conn.close()
    for extra in ([], ["--json"]):
        assert cli_main(["audit", "show", "--trace-id", TRACE_ID, "--path", str(path), *extra]) == 0
        captured = capsys.readouterr()
        assert "binary" in captured.out
        assert captured.err == ""


def test_a_closed_pipe_ends_the_output_quietly(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    sink = JsonlFileSink(log)
    for _ in range(40):
        sink.write(_event(prompt_text="long prompt " * 1000))
    sink.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "audit", "show", "--trace-id", TRACE_ID, "--path", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()  # like `| head -c 100`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert err == b""


# --- retention --------------------------------------------------------------------------------


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class _Counter:
    def __init__(self) -> None:
        self.added: list[tuple[int, dict[str, str]]] = []

    def add(self, amount: int, attributes: dict[str, str]) -> None:
        self.added.append((amount, attributes))


def _simulate(sink: JsonlFileSink | SqliteSink, clock: _Clock, hours: int, per_hour: int) -> None:
    for step in range(hours * per_hour):
        clock.now += timedelta(hours=1 / per_hour)
        sink.write(_event(session_id=str(step), timestamp=format_timestamp(clock.now)))


@pytest.mark.parametrize("sink_kind", ["file", "sqlite"])
def test_retention_deletes_by_age_and_keeps_the_last_day(tmp_path: Path, sink_kind: str) -> None:
    clock = _Clock(_days_ago(10))
    sink: JsonlFileSink | SqliteSink
    if sink_kind == "file":
        sink = JsonlFileSink(
            tmp_path / "events.log", max_bytes=20_000, retention=timedelta(days=1), clock=clock
        )
    else:
        sink = SqliteSink(tmp_path / "events.db", retention=timedelta(days=1), clock=clock)
    _simulate(sink, clock, hours=72, per_hour=30)
    events = list(sink.query(Filters()))
    oldest = min(str(e["timestamp"]) for e in events)
    day_ago = format_timestamp(clock.now - timedelta(days=1))
    almost_day_ago = format_timestamp(clock.now - timedelta(hours=23, minutes=58))
    assert oldest <= almost_day_ago, "an event from 23h58m ago must still be there"
    slack = timedelta(hours=1) if sink_kind == "file" else timedelta(minutes=2)  # a file goes whole
    assert oldest >= format_timestamp(clock.now - timedelta(days=1) - slack)
    assert any(str(e["timestamp"]) >= day_ago for e in events)
    if sink_kind == "sqlite":
        conn = sqlite3.connect(tmp_path / "events.db")
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        conn.close()
        assert {"audit_events_trace_id", "audit_events_timestamp"} <= indexes
    sink.close()


@pytest.mark.parametrize("sink_kind", ["file", "sqlite"])
def test_the_disk_cap_deletes_early_and_logs_and_counts_it(
    tmp_path: Path, sink_kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from nl2sql_observability.audit import retention

    counter = _Counter()
    monkeypatch.setattr(retention, "_counter", counter)
    monkeypatch.setattr(retention, "_last_logged", None)  # no warning logged by an earlier test
    clock = _Clock(_days_ago(10))
    cap = 200_000
    sink: JsonlFileSink | SqliteSink
    if sink_kind == "file":
        path = tmp_path / "events.log"
        sink = JsonlFileSink(path, max_bytes=20_000, max_disk_bytes=cap, clock=clock)
    else:
        path = tmp_path / "events.db"
        sink = SqliteSink(path, max_disk_bytes=cap, clock=clock)
    with caplog.at_level(logging.WARNING, logger="nl2sql_observability.audit"):
        for step in range(600):
            clock.now += timedelta(minutes=1)
            sink.write(_event(session_id=str(step), prompt_text=f"question {step} " + "schema " * 200))
    sink.close()
    on_disk = sum(
        f.stat().st_size for f in tmp_path.iterdir() if f.name.startswith(path.name) and f.is_file()
    )
    # The file sink may exceed the cap by the line that triggers the check; SQLite by a few pages
    # (its write-ahead log counts in the cap, so it never holds megabytes).
    slack = 20_000 if sink_kind == "file" else 64 * 1024
    assert on_disk <= cap + slack
    evicted = sum(n for n, _ in counter.added)
    kept = len(list(type(sink)(path).query(Filters())))
    assert evicted > 0
    assert evicted + kept == 600
    assert all(attrs == {"nl2sql.audit.sink": sink_kind} for _, attrs in counter.added)
    assert any("before their retention ran out" in r.getMessage() for r in caplog.records)


def test_retention_settings_are_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVABILITY_AUDIT_RETENTION", "forever")
    with pytest.raises(ConfigurationError) as exc:
        load_all()
    assert "OBSERVABILITY_AUDIT_RETENTION='forever'" in str(exc.value)
    monkeypatch.setenv("OBSERVABILITY_AUDIT_RETENTION", "7d")
    monkeypatch.setenv("OBSERVABILITY_AUDIT_MAX_DISK_BYTES", "1000")
    with pytest.raises(ConfigurationError) as exc:
        load_all()
    assert "OBSERVABILITY_AUDIT_MAX_DISK_BYTES=1000 must be 0 (no cap) or at least twice" in str(exc.value)


def test_a_retention_backlog_is_worked_off_over_several_writes(tmp_path: Path) -> None:
    from nl2sql_observability.audit.sinks import DELETE_BATCH, MAX_BATCHES_PER_CHECK

    path = tmp_path / "events.db"
    clock = _Clock(_days_ago(10))
    sink = SqliteSink(path, retention=timedelta(days=1), clock=clock)
    sink.write(_event(timestamp=format_timestamp(clock.now)))
    backlog = DELETE_BATCH * MAX_BATCHES_PER_CHECK * 2 + 7
    conn = sqlite3.connect(path)
    old = format_timestamp(clock.now - timedelta(days=2))
    conn.executemany(
        "INSERT INTO audit_events (schema_version, event_id, timestamp) VALUES (1, ?, ?)",
        [(f"old-{i}", old) for i in range(backlog)],
    )
    conn.commit()

    def old_rows() -> int:
        row = conn.execute("SELECT count(*) FROM audit_events WHERE timestamp = ?", (old,)).fetchone()
        return int(row[0])

    clock.now += timedelta(hours=1)  # the next write checks retention
    sink.write(_event(timestamp=format_timestamp(clock.now)))
    assert old_rows() == backlog - DELETE_BATCH * MAX_BATCHES_PER_CHECK  # bounded work per write
    for _ in range(3):
        sink.write(_event(timestamp=format_timestamp(clock.now)))
    assert old_rows() == 0
    conn.close()
    sink.close()
