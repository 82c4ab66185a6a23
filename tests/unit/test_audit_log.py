"""Audit log: multi-process safety across rotations, SIGKILL, time travel, scrubbing, failure handling."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nl2sql_observability import audit
from nl2sql_observability.audit import AuditLog, AuditSettings, record_llm_call, set_audit_log
from nl2sql_observability.audit.events import build_event, decode_line, format_timestamp
from nl2sql_observability.audit.sinks import (
    JsonlFileSink,
    SqliteSink,
    iter_file_events,
    rotated_paths,
    snapshot_files,
)
from nl2sql_observability.cli import main as cli_main
from opentelemetry.sdk.trace import TracerProvider

SECRET = "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0"
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
        "span_id": "00f067aa0ba902b7",
        "tenant_id": "acme",
    }
    fields.update(overrides)
    return build_event(**fields)  # type: ignore[arg-type]


def _all_lines(path: Path) -> list[bytes]:
    """Every line of the log and its rotated files, read like the CLI reads them: from the readers'
    snapshot under the writers' lock (an unlocked listing races a writer that is rotating)."""
    lines: list[bytes] = []
    files = snapshot_files(path)
    try:
        for _, handle, size in files:
            lines.extend(handle.read(size).splitlines(keepends=True))
    finally:
        for _, handle, _ in files:
            handle.close()
    return lines


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from nl2sql_observability.audit.events import build_event, encode_line
    from nl2sql_observability.audit.sinks import JsonlFileSink

    path = sys.argv[1]
    writer, count, max_bytes, pad = map(int, sys.argv[2:6])
    sink = JsonlFileSink(Path(path), max_bytes=max_bytes, backup_count=10000)
    base = build_event(model="m", prompt_text="p" * pad, response_text="r", input_tokens=1, output_tokens=1,
                       latency_ms=1.0, status="ok", node=f"w{writer}")
    print("ready", flush=True)
    for seq in range(count if count > 0 else 10**9):
        event = dict(base, event_id=f"{writer}-{seq}", session_id=str(seq))
        sink.write_line(encode_line(event))
    """
)


def _spawn_writer(path: Path, writer: int, count: int, max_bytes: int, pad: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(writer), str(count), str(max_bytes), str(pad)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_four_processes_through_rotations_lose_and_tear_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    max_bytes = 200_000
    procs = [_spawn_writer(path, w, 5000, max_bytes, pad=200) for w in range(4)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    files = rotated_paths(path)
    assert len(files) > 10, "the test must go through many rotations"
    seen: dict[str, int] = {}
    for file in files:
        data = file.read_bytes()
        assert data.endswith(b"\n")
        assert len(data) < max_bytes + 1000  # rotated at the limit, one line of slack at most
        if file != path:  # and never early: one rotation per crossing, whoever crossed it
            assert len(data) >= max_bytes
        for line in data.splitlines():
            event = decode_line(line)  # raises on a torn or interleaved line
            seen[str(event["event_id"])] = seen.get(str(event["event_id"]), 0) + 1
    assert len(seen) == 20_000
    assert set(seen.values()) == {1}
    assert {f"{w}-{s}" for w in range(4) for s in range(5000)} == set(seen)


def test_sigkill_mid_run_leaves_no_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    for round_ in range(3):
        # ~20 KB events cross page boundaries, so a kill can land inside a write().
        proc = _spawn_writer(path, round_, 0, max_bytes=2_000_000, pad=20_000)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        start = len(_all_lines(path)) if path.exists() else 0
        _wait_for(
            lambda s=start: path.exists() and len(_all_lines(path)) > s + 50, what="the writer to write"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        lines = _all_lines(path)
        for line in lines[:-1]:
            decode_line(line)
        if lines[-1].endswith(b"\n"):
            decode_line(lines[-1])
        # The next writer (another process or this one) repairs a torn tail before appending.
        JsonlFileSink(path, max_bytes=2_000_000, backup_count=10000).write(
            _event(session_id=f"after-{round_}")
        )
        lines = _all_lines(path)
        assert all(line.endswith(b"\n") for line in lines)
        events = [decode_line(line) for line in lines]
        assert any(e["node"] == "generate_sql" for e in events)


def test_a_torn_tail_is_truncated_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    sink = JsonlFileSink(path)
    sink.write(_event())
    with path.open("ab") as handle:
        handle.write(b'{"schema_version":1,"event_id":"torn","prompt_text":"half a li')
    assert [e for e, _ in iter_file_events(path)][-1]["event_id"] != "torn"  # readers skip it
    sink.write(_event(node="after"))
    events = [decode_line(line) for line in path.read_bytes().splitlines()]
    assert [e["node"] for e in events] == ["generate_sql", "after"]


def _settings(tmp_path: Path, sink: str, **kw: object) -> AuditSettings:
    name = "events.db" if sink == "sqlite" else "events.log"
    return AuditSettings(sink=sink, path=tmp_path / name, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("sink", ["file", "sqlite"])
def test_an_event_from_24_hours_ago_is_found_by_show_and_search(
    tmp_path: Path, sink: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, sink, max_bytes=2000)
    log = AuditLog(settings)
    day_ago = format_timestamp(datetime.now(timezone.utc) - timedelta(hours=24))
    assert log.sink is not None
    log.sink.write(
        _event(timestamp=day_ago, status="error", error_type="ValueError", error_message="bad SQL")
    )
    for i in range(20):  # newer events that push the old one into rotated files
        log.sink.write(_event(trace_id=f"{i:032x}", prompt_text="newer " * 20))
    log.close()
    if sink == "file":
        assert len(rotated_paths(settings.resolved_path())) > 2
    source = ["--sink", sink, "--path", str(settings.resolved_path())]

    assert cli_main(["audit", "show", "--trace-id", TRACE_ID, *source]) == 0
    out = capsys.readouterr().out
    assert day_ago in out
    assert "Which customers spent most?" in out
    assert "SELECT name FROM customers" in out

    assert cli_main(["audit", "show", "--trace-id", TRACE_ID.upper(), "--json", *source]) == 0
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert event["timestamp"] == day_ago
    assert event["tokens"] == {"input": 12, "output": 20, "total": 32}

    assert cli_main(["audit", "search", "--since", "48h", "--status", "error", "--json", *source]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["trace_id"] for e in found] == [TRACE_ID]

    assert cli_main(["audit", "search", "--since", "12h", "--tenant", "acme", "--json", *source]) == 0
    recent = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(recent) == 20
    assert TRACE_ID not in {e["trace_id"] for e in recent}

    assert cli_main(["audit", "search", "--since", "48h", "--until", "12h", *source]) == 0
    assert "status=error" in capsys.readouterr().out
    assert cli_main(["audit", "search", "--limit", "3", "--json", *source]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert cli_main(["audit", "search", "--node", "nope", *source]) == 1


@pytest.mark.parametrize("sink", ["file", "sqlite"])
def test_a_scrubbed_secret_is_absent_from_the_store(tmp_path: Path, sink: str) -> None:
    settings = _settings(tmp_path, sink)
    set_audit_log(AuditLog(settings))
    try:
        record_llm_call(
            model="fake-llm",
            prompt_text=f"use key {SECRET} for jane@example.com",
            response_text=f"SELECT 1 -- {SECRET}",
            input_tokens=3,
            output_tokens=4,
            latency_ms=1.0,
            status="error",
            error_type="AuthError",
            error_message=f"401 for {SECRET}",
        )
    finally:
        set_audit_log(None)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert raw, "something was written"
    assert SECRET.encode() not in raw
    assert b"jane@example.com" not in raw
    if sink == "sqlite":
        (event,) = SqliteSink(settings.resolved_path()).query(audit.Filters())
    else:
        ((event, _),) = list(iter_file_events(settings.resolved_path()))
    assert event["prompt_text"] == "use key [REDACTED:openai_api_key] for [REDACTED:email]"
    assert event["error_message"] == "401 for [REDACTED:openai_api_key]"


def test_record_llm_call_takes_ids_and_tenant_from_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nl2sql_observability import context

    settings = _settings(tmp_path, "file")
    set_audit_log(AuditLog(settings))
    tracer = TracerProvider().get_tracer("test")
    user = context.UserContext(tenant_id="acme", user_id="u-1", session_id="s-9")
    monkeypatch.setattr(context, "current_user_context", lambda: user)
    monkeypatch.setattr(context, "current_node", lambda: "generate_sql")
    try:
        with tracer.start_as_current_span("chat fake-llm") as span:
            record_llm_call(
                model="fake-llm",
                prompt_text="p",
                response_text="r",
                input_tokens=None,
                output_tokens=None,
                latency_ms=2.0,
                status="ok",
            )
        record_llm_call(  # outside a span, explicit node wins
            model="fake-llm",
            prompt_text="p",
            response_text="r",
            input_tokens=1,
            output_tokens=None,
            latency_ms=2.0,
            status="ok",
            node="answer",
        )
    finally:
        set_audit_log(None)
    first, second = (e for e, _ in iter_file_events(settings.resolved_path()))
    ctx = span.get_span_context()
    assert first["trace_id"] == format(ctx.trace_id, "032x")
    assert first["span_id"] == format(ctx.span_id, "016x")
    assert (first["tenant_id"], first["user_id"], first["session_id"]) == ("acme", "u-1", "s-9")
    assert first["node"] == "generate_sql"
    assert first["tokens"] == {"input": None, "output": None, "total": None}
    assert list(first) == list(audit.FIELDS)
    assert second["trace_id"] is None
    assert second["span_id"] is None
    assert second["node"] == "answer"
    assert second["tokens"] == {"input": 1, "output": None, "total": 1}


def test_text_is_capped_with_a_visible_marker(tmp_path: Path) -> None:
    event = _event(prompt_text="word " * 10_000, response_text="ok")
    event_small = build_event(
        model="m",
        prompt_text="x" * 100 + " " + SECRET,
        response_text="y",
        input_tokens=1,
        output_tokens=1,
        latency_ms=1,
        status="ok",
        text_max_chars=64,
    )
    assert str(event["prompt_text"]).endswith("…[TRUNCATED: 33616 more chars]")
    assert len(str(event["prompt_text"])) < 16384 + 40
    assert event["response_text"] == "ok"
    assert SECRET not in str(event_small["prompt_text"])
    assert "[TRUNCATED:" in str(event_small["prompt_text"])


def test_a_failing_sink_is_reported_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    set_audit_log(AuditLog(AuditSettings(sink="file", path=blocker / "events.log")))
    try:
        with caplog.at_level(logging.ERROR, logger="nl2sql_observability.audit"):
            for _ in range(3):
                record_llm_call(
                    model="m",
                    prompt_text="p",
                    response_text="r",
                    input_tokens=1,
                    output_tokens=1,
                    latency_ms=1.0,
                    status="ok",
                )
    finally:
        set_audit_log(None)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "not being audited" in errors[0].getMessage()


def test_capture_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVABILITY_AUDIT_ENABLED", "false")
    monkeypatch.setenv("OBSERVABILITY_AUDIT_PATH", str(tmp_path / "events.log"))
    set_audit_log(None)
    try:
        record_llm_call(
            model="m",
            prompt_text="p",
            response_text="r",
            input_tokens=1,
            output_tokens=1,
            latency_ms=1,
            status="ok",
        )
    finally:
        set_audit_log(None)
    assert not (tmp_path / "events.log").exists()


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVABILITY_AUDIT_SINK", "postgres")
    with pytest.raises(audit.AuditConfigError, match="OBSERVABILITY_AUDIT_SINK='postgres'"):
        audit.load_audit_settings()


def test_default_path_is_in_the_user_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert AuditSettings().resolved_path() == tmp_path / "nl2sql-observability" / "audit" / "events.log"
    assert AuditSettings(sink="sqlite").resolved_path().name == "events.db"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "show", "--trace-id", "xyz"], "expected 32 hexadecimal characters"),
        (["audit", "search", "--since", "yesterday"], "--since 'yesterday'"),
        (["audit", "search", "--since", "1h", "--until", "2h"], "is after --until"),
        (["audit", "show", "--trace-id", TRACE_ID, "--path", "{missing}"], "no audit log at"),
        (["audit", "show", "--trace-id", TRACE_ID, "--path", "{corrupt}"], "is not an audit log"),
        (["audit", "search", "--sink", "sqlite", "--path", "{corrupt}"], "is not a readable audit database"),
    ],
)
def test_bad_input_gives_a_clear_error_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    corrupt = tmp_path / "corrupt.log"
    corrupt.write_bytes(b"\x00\x01 this is not json\nneither is this\n")
    args = [a.format(missing=tmp_path / "missing.log", corrupt=corrupt) for a in args]
    assert cli_main([*args, "--path", str(corrupt)] if "--path" not in args else args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


CLI = "import sys; from nl2sql_observability.cli import main; sys.exit(main())"


def test_cli_usage_errors_exit_non_zero_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "audit", "search", "--limit", "0"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert "--limit" in proc.stderr
    assert "Traceback" not in proc.stderr
