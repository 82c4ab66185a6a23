"""The audit writer off the app's thread: what it accepted, wrote and could not write is counted and
logged; a full queue, SIGTERM, normal exit and four writer processes lose nothing accepted; SIGKILL
tears nothing."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nl2sql_observability.audit import AuditLog, AuditSettings, CallRecord, load_audit_settings, writer
from nl2sql_observability.audit.events import AuditEvent, Filters, decode_line
from nl2sql_observability.audit.sinks import snapshot_files
from nl2sql_observability.audit.writer import AuditWriter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def _record(session: str, prompt: str = "Which customers spent most?") -> CallRecord:
    return CallRecord(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        tenant_id="acme",
        user_id="u-1",
        session_id=session,
        node="generate_sql",
        model="fake-llm",
        provider="fake",
        response_model="fake-llm",
        input_tokens=3,
        output_tokens=5,
        cost=None,
        status="ok",
        error_type=None,
        error_message=None,
        end_time=time.time(),
        duration_s=0.25,
        prompt_text=prompt,
        response_text="SELECT 1",
    )


class _ListSink:
    """Stores events in memory; `gate` holds every write until set; `fail` names sessions to refuse."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.events: list[AuditEvent] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail

    def write(self, event: AuditEvent) -> None:
        self.gate.wait(30)
        if event["session_id"] in self.fail:
            raise OSError("disk full")
        self.events.append(event)

    def query(self, filters: Filters, problems: list[str] | None = None) -> Any:
        return iter(self.events)

    def search(self, filters: Filters, limit: int, problems: list[str] | None = None) -> list[AuditEvent]:
        return self.events[-limit:]

    def close(self) -> None:
        pass


def _writer(sink: _ListSink, **kw: Any) -> AuditWriter:
    from functools import partial

    from nl2sql_observability.audit.events import event_from_record

    settings = {"queue_size": 64, "queue_timeout": 0.05, "exit_timeout": 10.0, **kw}
    return AuditWriter(sink, partial(event_from_record, text_max_chars=16384), where="memory", **settings)


def test_accepted_written_and_failed_are_counted_logged_and_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = _ListSink(fail=frozenset({"s-3", "s-4"}))
    w = _writer(sink)
    with caplog.at_level(logging.WARNING, logger="nl2sql_observability.audit"):
        accepted = [w.submit(_record(f"s-{i}")) for i in range(10)]
        assert w.flush(30)
    assert accepted == [True] * 10
    assert w.counts() == {("accepted", None): 10, ("written", None): 8, ("failed", "OSError"): 2}
    assert [e["session_id"] for e in sink.events] == [f"s-{i}" for i in (0, 1, 2, 5, 6, 7, 8, 9)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is failing" in m for m in messages) == 1  # once per failure streak, not per event
    assert sum("recovered" in m for m in messages) == 1
    # The counter the app's meter exports reads the process's totals, which include this writer's.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_observable_counter("nl2sql.audit.events", callbacks=[writer.observe])
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (p.attributes["nl2sql.audit.outcome"], p.attributes.get("error.type")): p.value
        for p in data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    }
    assert all(points[key] >= n for key, n in w.counts().items())
    provider.shutdown()
    w.close()


def test_a_full_queue_waits_its_bound_then_counts_and_logs_what_it_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = _ListSink()
    sink.gate.clear()  # the writer is stuck in its first write: the queue fills up
    w = _writer(sink, queue_size=4, queue_timeout=0.01)
    with caplog.at_level(logging.ERROR, logger="nl2sql_observability.audit"):
        results = {f"s-{i}": w.submit(_record(f"s-{i}")) for i in range(12)}
    sink.gate.set()
    assert w.close(30)
    accepted = {s for s, ok in results.items() if ok}
    refused = set(results) - accepted
    assert len(accepted) >= 4, results  # a batch being written, four queued
    assert refused, results  # the rest refused
    assert {e["session_id"] for e in sink.events} == accepted  # every accepted event was written
    assert w.counts() == {
        ("accepted", None): len(accepted),
        ("written", None): len(accepted),
        ("failed", "queue_full"): len(refused),
    }
    assert any("not written (queue_full)" in r.getMessage() for r in caplog.records)


def test_a_closed_writer_refuses_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    w = _writer(_ListSink())
    assert w.close(5)
    assert w.submit(_record("late")) is False
    assert w.counts() == {("failed", "closed"): 1}


def test_the_event_is_built_from_the_record_and_keeps_an_allowed_tenant() -> None:
    sink = _ListSink()
    w = _writer(sink)
    record = _record("s-1", prompt="my key is sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0")
    # A tenant id the contract allows is never scrubbed, even where it looks like something else.
    record = record._replace(tenant_id="10.0.0.1")
    w.submit(record)
    w.close(10)
    (event,) = sink.events
    assert event["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert event["span_id"] == "00f067aa0ba902b7"
    assert (event["tenant_id"], event["user_id"], event["session_id"]) == ("10.0.0.1", "u-1", "s-1")
    assert event["tokens"] == {"input": 3, "output": 5, "total": 8}
    assert event["latency_ms"] == 250.0
    assert "sk-proj-" not in event["prompt_text"]


def test_an_empty_audit_path_means_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("OBSERVABILITY_AUDIT_PATH", "")
    assert load_audit_settings().resolved_path() == tmp_path / "nl2sql-observability/audit/events.log"


# --- processes ---------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nl2sql_observability.audit import AuditLog, AuditSettings, CallRecord, set_audit_log, submit

    path, name, count, pad, queue_size, mode = sys.argv[1:7]
    settings = AuditSettings(path=Path(path), max_bytes=200_000, backup_count=100_000,
                             queue_size=int(queue_size), queue_timeout=0.001)
    set_audit_log(AuditLog(settings))
    print("ready", flush=True)
    for seq in range(int(count) or 10**9):
        session = f"{name}-{seq}"
        record = CallRecord(0, 0, "acme", None, session, "n", "m", "p", "m", 1, 1, None, "ok", None, None,
                            time.time(), 0.001, "x" * int(pad), "y")
        print(("a " if submit(record) else "r ") + session, flush=True)
    if mode == "exit":
        sys.exit(0)   # no close(): the atexit drain writes what is queued
    """
)


def _spawn(path: Path, name: str, count: int, pad: int, queue_size: int, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), name, str(count), str(pad), str(queue_size), mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def _logged_sessions(path: Path) -> list[str]:
    files = snapshot_files(path)
    sessions = []
    try:
        for _, handle, size in files:
            data = handle.read(size)
            assert not data or data.endswith(b"\n")
            sessions += [str(decode_line(line)["session_id"]) for line in data.splitlines()]
    finally:
        for _, handle, _ in files:
            handle.close()
    return sessions


def _wait_for_lines(proc: subprocess.Popen[str], wanted: int, timeout: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < wanted and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    return lines


def test_four_processes_with_full_queues_lose_nothing_accepted_under_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    procs = [_spawn(path, f"w{i}", 0, 2000, 8, "term") for i in range(4)]
    seen: dict[str, list[str]] = {}
    for i, proc in enumerate(procs):
        seen[f"w{i}"] = _wait_for_lines(proc, 1 + 400)  # "ready" + 400 outcomes, then SIGTERM mid-run
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for i, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGTERM  # the drain ends the process as SIGTERM would
        seen[f"w{i}"] += out.split("\n")
    accepted = {line[2:] for lines in seen.values() for line in lines if line.startswith("a ")}
    refused = {line[2:] for lines in seen.values() for line in lines if line.startswith("r ")}
    logged = _logged_sessions(path)
    assert len(logged) == len(set(logged)), "an event was written twice"
    assert accepted <= set(logged), sorted(accepted - set(logged))[:5]
    assert not refused & set(logged)
    assert len(accepted) >= 4 * 100
    assert len(list(path.parent.glob("events.log.*"))) > 2, "the run must go through rotations"


def test_a_normal_exit_writes_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    proc = _spawn(path, "x", 2000, 500, 100_000, "exit")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    accepted = [line[2:] for line in out.splitlines() if line.startswith("a ")]
    assert len(accepted) == 2000
    assert sorted(_logged_sessions(path)) == sorted(accepted)


def test_sigkill_tears_no_line_written_through_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    for round_ in range(2):
        proc = _spawn(path, f"k{round_}", 0, 30_000, 64, "kill")  # 30 KB lines span pages
        _wait_for_lines(proc, 1 + 200)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        files = snapshot_files(path)
        try:
            for _, handle, size in files:
                lines = handle.read(size).splitlines(keepends=True)
                for line in lines[:-1]:
                    decode_line(line)  # only the very last line may be torn by the kill
        finally:
            for _, handle, _ in files:
                handle.close()
        log = AuditLog(AuditSettings(path=path, max_bytes=200_000, backup_count=100_000))
        log.submit(_record(f"after-{round_}"))
        log.close()
        assert f"after-{round_}" in _logged_sessions(path)  # the next writer repaired the tail


def test_audit_show_finds_the_event_soon_after_the_call_returned(
    tmp_path: Path, captured: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app is not blocked by the writer, and `audit show` finds the event once the writer had its
    turn (no flush, no close: what a user in another terminal sees). Polled, not timed."""
    from nl2sql_observability import llm_call
    from nl2sql_observability.audit import set_audit_log
    from nl2sql_observability.cli import main as cli_main

    path = tmp_path / "events.log"
    set_audit_log(AuditLog(AuditSettings(path=path)))
    try:
        with llm_call(model="gpt-4o", provider="openai", prompt="top customers?") as call:
            call.set_response("SELECT 1", input_tokens=1, output_tokens=1)
        trace_id = format(captured.span("chat gpt-4o").context.trace_id, "032x")
        deadline = time.monotonic() + 30
        found = 1
        while found != 0 and time.monotonic() < deadline:
            found = cli_main(["audit", "show", "--trace-id", trace_id, "--path", str(path)])
            if found != 0:
                time.sleep(0.01)
        assert found == 0
        assert "top customers?" in capsys.readouterr().out
    finally:
        set_audit_log(None)


FORKER = textwrap.dedent(
    """
    import os, sys, time, warnings
    from pathlib import Path
    from nl2sql_observability.audit import AuditLog, AuditSettings, CallRecord, set_audit_log, submit

    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with the writer thread running
    # a generous exit budget: on a loaded machine the default 10 s may run out (counted, logged)
    set_audit_log(AuditLog(AuditSettings(path=Path(sys.argv[1]), exit_timeout=120)))

    def record(session):
        return CallRecord(0, 0, "acme", None, session, "n", "m", "p", "m", 1, 1, None, "ok", None, None,
                          time.time(), 0.001, "x" * 4000, "y")

    for i in range(300):
        submit(record(f"parent-{i}"))
    pid = os.fork()  # the parent's queue is still being written: the child must not write it again
    if pid == 0:
        for i in range(300):
            submit(record(f"child-{i}"))
        sys.exit(0)  # atexit writes the child's queue
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    set_audit_log(None)
    """
)


def test_a_forked_child_writes_its_own_events_and_none_of_its_parents(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    proc = subprocess.run(
        [sys.executable, "-c", FORKER, str(path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not written" not in proc.stderr, proc.stderr[-2000:]
    logged = _logged_sessions(path)
    expected = [f"parent-{i}" for i in range(300)] + [f"child-{i}" for i in range(300)]
    assert sorted(logged) == sorted(expected)  # each once: none lost, none written twice
