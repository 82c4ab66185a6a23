"""Bad input, one table: each row is a hostile or unlucky input to `nl2sql-obs`, or to an app run under
`opentelemetry-instrument`, with the exit status and the message it must get. Every row also checks
what holds for all of them: no traceback, no hang (each run has a timeout, so a hang fails its row
instead of blocking the suite), no raw terminal escape on stdout, no secret echoed, no file written
or changed, and an app refused at start-up never runs. The next round adds rows here, not files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nl2sql_observability.audit.events import build_event, encode_line, format_timestamp
from nl2sql_observability.audit.sinks import SqliteSink

BIN = Path(sys.executable).parent
APP = "@app"  # `command` of a row that runs this app under opentelemetry-instrument
APP_CODE = "print('app ran')"
TIMEOUT_S = 60
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
LOG = "{tmp}/audit/events.log"
DEEP = "[" * 5000 + "]" * 5000  # far beyond the interpreter's recursion limit for json.loads
SECRET = "S3cr3tPassw0rd"
ESCAPES = "\x1b]0;pwned\x07\x1b[2J"  # retitle the window, clear the screen


def _nothing(tmp: Path) -> None:
    pass


@dataclass(frozen=True)
class Case:
    id: str
    command: tuple[str, ...]  # `nl2sql-obs` arguments, or (APP,); `{tmp}` is the row's directory
    exit: int
    message: str  # must appear on stderr
    env: Mapping[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] = _nothing
    stdin_closed: bool = False
    stdout: str = ""  # must appear on stdout (the data a bad input must not hide)
    output: str = "pipe"  # where stdout goes: "pipe" (captured), "full" (/dev/full), "closed"
    writes: bool = False  # the input is not refused (the app runs): its files may be written


# --- setups (relative to the test's clock: no date is written into a test) -----------------------


def _event_line(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "model": "fake-llm",
        "prompt_text": "Which customers spent most?",
        "response_text": "SELECT name FROM customers",
        "input_tokens": 1,
        "output_tokens": 1,
        "latency_ms": 1.0,
        "status": "ok",
        "trace_id": TRACE_ID,
        "session_id": "good-event",
        "timestamp": format_timestamp(datetime.now(timezone.utc) - timedelta(minutes=1)),
    }
    fields.update(overrides)
    return encode_line(build_event(**fields))  # type: ignore[arg-type]


def _audit_dir(tmp: Path) -> Path:
    directory = tmp / "audit"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def _fifo(name: str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        _audit_dir(tmp)
        os.mkfifo(tmp / name, 0o600)

    return make


def _deep_prices(tmp: Path) -> None:
    (tmp / "prices.json").write_text(DEEP)


def _huge_price(tmp: Path) -> None:
    price = {"input": 1e308, "output": 1, "source": "https://example.com/pricing", "date": "2026-01-01"}
    (tmp / "prices.json").write_text(json.dumps({"unit": "USD per 1M tokens", "models": {"m": price}}))


def _sqlite_log(tmp: Path) -> None:
    sink = SqliteSink(_audit_dir(tmp) / "events.db")
    sink.write(json.loads(_event_line()))
    sink.close()


def _deep_line_and_a_good_one(tmp: Path) -> None:
    good = _event_line()
    deep = good[:-2] + b',"extra":' + DEEP.encode() + b"}\n"
    (_audit_dir(tmp) / "events.log").write_bytes(deep + good)


def _rotated_file_with_no_event(tmp: Path) -> None:
    directory = _audit_dir(tmp)
    (directory / "events.log.1").write_text("this is not an audit event\nnor this\n")
    (directory / "events.log").write_bytes(_event_line())


def _rotated_directory(tmp: Path) -> None:
    (_audit_dir(tmp) / "events.log.3").mkdir()
    (tmp / "audit" / "events.log").write_bytes(_event_line())


def _garbage_timestamp_and_a_good_event(tmp: Path) -> None:
    (_audit_dir(tmp) / "events.log").write_bytes(_event_line(timestamp="garbage") + _event_line())


def _event_written_by_a_clock_in_year_999(tmp: Path) -> None:
    when = datetime(999, 6, 2, tzinfo=timezone.utc)  # a clock gone wrong, not today's date
    (_audit_dir(tmp) / "events.log").write_bytes(_event_line(timestamp=format_timestamp(when)))


def _one_event(tmp: Path) -> None:
    (_audit_dir(tmp) / "events.log").write_bytes(_event_line())


def _escapes_in_the_response(tmp: Path) -> None:
    (_audit_dir(tmp) / "events.log").write_bytes(_event_line(response_text=f"ok{ESCAPES}", node=ESCAPES))


def _symlinked_audit_file(tmp: Path) -> None:
    (tmp / "target").write_text("a file of the user's, not an audit log\n")
    (_audit_dir(tmp) / "events.log").symlink_to(tmp / "target")


def _world_writable_audit_dir(tmp: Path) -> None:
    (tmp / "shared").mkdir()
    (tmp / "shared").chmod(0o777)


CASES = [
    # --- tracebacks (issue 14, item 7) ---
    Case(
        "search-limit-beyond-sqlite-integers",
        ("audit", "search", "--limit", "99999999999999999999", "--path", "{tmp}/audit/events.db"),
        2,
        "is not allowed (allowed: 1 to 1,000,000)",
        setup=_sqlite_log,
    ),
    Case(
        "audit-line-nested-too-deep",
        ("audit", "search", "--path", "{tmp}/audit/events.log"),
        0,
        "nested deeper than 64 levels",
        setup=_deep_line_and_a_good_one,
        stdout="session=good-event",
    ),
    *(
        Case(
            f"app-{name.lower()}-nested-too-deep",
            (APP,),
            2,
            f"{name}: JSON nested deeper than 64 levels is not allowed",
            env={name: DEEP},
        )
        for name in (
            "OBSERVABILITY_VALIDATOR_NODES",
            "OBSERVABILITY_SCRUB_EXTRA_PATTERNS",
            "OBSERVABILITY_SCRUB_ALLOW",
        )
    ),
    Case(
        "scrub-extra-patterns-nested-too-deep",
        ("scrub",),
        2,
        "OBSERVABILITY_SCRUB_EXTRA_PATTERNS: JSON nested deeper than 64 levels",
        env={"OBSERVABILITY_SCRUB_EXTRA_PATTERNS": DEEP},
    ),
    Case(
        "app-prices-file-nested-too-deep",
        (APP,),
        2,
        "nested deeper than 64 levels",
        env={"OBSERVABILITY_PRICES_FILE": "{tmp}/prices.json"},
        setup=_deep_prices,
    ),
    Case(
        "demo-db-under-proc",
        ("demo", "--requests", "1", "--db", "/proc/nope/x.db"),
        2,
        "--db /proc/nope/x.db: cannot create files in /proc/nope",
    ),
    Case("scrub-with-stdin-closed", ("scrub",), 2, "stdin is closed", stdin_closed=True),
    # --- hangs (item 8) ---
    Case(
        "app-prices-file-is-a-fifo",
        (APP,),
        2,
        "not a regular file",
        env={"OBSERVABILITY_PRICES_FILE": "{tmp}/audit/prices.fifo"},
        setup=_fifo("audit/prices.fifo"),
    ),
    Case(
        "app-audit-path-is-a-fifo",
        (APP,),
        2,
        "OBSERVABILITY_AUDIT_PATH: {tmp}/audit/events.log is a FIFO",
        env={"OBSERVABILITY_AUDIT_PATH": "{tmp}/audit/events.log"},
        setup=_fifo("audit/events.log"),
    ),
    Case(
        "demo-audit-path-is-a-fifo",
        ("demo", "--requests", "1", "--time-scale", "0", "--no-progress", "--db", "{tmp}/demo.sqlite3"),
        2,
        "is a FIFO",
        env={"OBSERVABILITY_AUDIT_PATH": "{tmp}/audit/events.log"},
        setup=_fifo("audit/events.log"),
    ),
    Case(
        "search-path-is-a-fifo",
        ("audit", "search", "--path", "{tmp}/audit/events.log"),
        2,
        "is a FIFO, socket or device, not a regular file",
        setup=_fifo("audit/events.log"),
    ),
    Case(
        "sqlite-search-path-is-a-fifo",
        ("audit", "search", "--sink", "sqlite", "--path", "{tmp}/audit/events.log"),
        2,
        "not a regular file",
        setup=_fifo("audit/events.log"),
    ),
    Case("demo-time-scale-1e308", ("demo", "--time-scale", "1e308"), 2, "'1e308' is not allowed"),
    Case(
        "demo-db-is-a-fifo",
        ("demo", "--requests", "1", "--db", "{tmp}/audit/demo.fifo"),
        2,
        "is a FIFO, socket or device, not a regular file",
        setup=_fifo("audit/demo.fifo"),
    ),
    Case(
        "demo-summary-json-is-a-fifo",
        ("demo", "--requests", "1", "--summary-json", "{tmp}/audit/summary.fifo"),
        2,
        "is a FIFO, socket or device, not a regular file",
        setup=_fifo("audit/summary.fifo"),
    ),
    Case(
        "app-log-stream-is-a-fifo",
        (APP,),
        2,
        "OBSERVABILITY_LOG_STREAM='file:{tmp}/audit/log.fifo': a FIFO with no reader",
        env={"OBSERVABILITY_LOG_STREAM": "file:{tmp}/audit/log.fifo"},
        setup=_fifo("audit/log.fifo"),
    ),
    # --- hidden or wrong data (item 9) ---
    Case(
        "rotated-file-with-no-event-hides-nothing",
        ("audit", "search", "--path", "{tmp}/audit/events.log"),
        0,
        "events.log.1 is not an audit log",
        setup=_rotated_file_with_no_event,
        stdout="session=good-event",
    ),
    Case(
        "rotated-name-that-is-a-directory-hides-nothing",
        ("audit", "search", "--path", "{tmp}/audit/events.log"),
        0,
        "events.log.3 is not a regular file; skipped",
        setup=_rotated_directory,
        stdout="session=good-event",
    ),
    Case(
        "timestamp-that-names-no-time-is-reported",
        ("audit", "search", "--since", "1h", "--path", "{tmp}/audit/events.log"),
        0,
        "timestamp 'garbage' is not an ISO 8601 time",
        setup=_garbage_timestamp_and_a_good_event,
        stdout="session=good-event",
    ),
    Case(
        "show-past-a-rotated-file-with-no-event",
        ("audit", "show", "--trace-id", TRACE_ID, "--path", "{tmp}/audit/events.log"),
        0,
        "events.log.1 is not an audit log",
        setup=_rotated_file_with_no_event,
        stdout="session=good-event",
    ),
    Case(
        "since-a-year-before-1000",
        ("audit", "search", "--since", "0999-06-01", "--path", "{tmp}/audit/events.log"),
        0,
        "",
        setup=_event_written_by_a_clock_in_year_999,
        stdout="0999-06-02T00:00:00.000Z",
    ),
    Case(
        "until-a-year-before-1000",
        ("audit", "search", "--until", "0999-06-01", "--path", "{tmp}/audit/events.log"),
        1,
        "no matching audit events",
        setup=_one_event,
    ),
    # --- terminal escapes (item 10): shown escaped, --json exact ---
    Case(
        "show-escapes-control-characters",
        ("audit", "show", "--trace-id", TRACE_ID, "--path", "{tmp}/audit/events.log"),
        0,
        "",
        setup=_escapes_in_the_response,
        stdout="ok\\x1b]0;pwned\\x07\\x1b[2J",
    ),
    Case(
        "search-escapes-control-characters",
        ("audit", "search", "--path", "{tmp}/audit/events.log"),
        0,
        "",
        setup=_escapes_in_the_response,
        stdout="node=\\x1b]0;pwned\\x07\\x1b[2J",
    ),
    Case(
        "search-json-keeps-the-text-exact",
        ("audit", "search", "--json", "--path", "{tmp}/audit/events.log"),
        0,
        "",
        setup=_escapes_in_the_response,
        stdout=json.dumps(f"ok{ESCAPES}", ensure_ascii=False),
    ),
    # --- credentials in an error (item 11) ---
    Case(
        "app-endpoint-with-a-password-and-a-bad-port",
        (APP,),
        2,
        "OTEL_EXPORTER_OTLP_ENDPOINT='https://***@collector.example:99999'",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://alice:{SECRET}@collector.example:99999"},
    ),
    Case(
        "app-grpc-endpoint-with-a-password",
        (APP,),
        2,
        "'***@collector.example:99999'",
        env={
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"alice:{SECRET}@collector.example:99999",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        },
    ),
    # --- symlinks and modes (item 12) ---
    Case(
        "app-audit-file-is-a-symlink",
        (APP,),
        2,
        "events.log is a symbolic link",
        env={"OBSERVABILITY_AUDIT_PATH": "{tmp}/audit/events.log"},
        setup=_symlinked_audit_file,
    ),
    Case(
        "demo-audit-file-is-a-symlink",
        ("demo", "--requests", "1", "--time-scale", "0", "--no-progress", "--db", "{tmp}/demo.sqlite3"),
        2,
        "events.log is a symbolic link",
        env={"OBSERVABILITY_AUDIT_PATH": "{tmp}/audit/events.log"},
        setup=_symlinked_audit_file,
    ),
    Case(
        "app-audit-dir-is-world-writable",
        (APP,),
        2,
        "audit directory {tmp}/shared is writable by group or others (mode 0777)",
        env={"OBSERVABILITY_AUDIT_PATH": "{tmp}/shared/events.log"},
        setup=_world_writable_audit_dir,
    ),
    # --- output that cannot be written ---
    *(
        Case(
            f"{name}-stdout-{output}",
            command,
            2,
            "writing the output: No space left on device" if output == "full" else "stdout is closed",
            setup=_one_event,
            output=output,
        )
        for output in ("full", "closed")
        for name, command in (
            ("search", ("audit", "search", "--path", LOG)),
            (
                "show-json",
                ("audit", "show", "--trace-id", TRACE_ID, "--json", "--path", "{tmp}/audit/events.log"),
            ),
            ("scrub", ("scrub", LOG)),
        )
    ),
    Case(
        "demo-log-lines-to-a-full-disk",
        ("demo", "--requests", "2", "--time-scale", "0", "--no-progress", "--db", "{tmp}/demo.sqlite3"),
        2,
        "log lines cannot be written to <stdout> (No space left on device)",
        env={"OBSERVABILITY_LOG_STREAM": "stdout"},
        output="full",
        writes=True,
    ),
    # --- weak spots ---
    Case(
        "app-price-1e308",
        (APP,),
        2,
        "models.m.input: Input should be less than or equal to 10000",
        env={"OBSERVABILITY_PRICES_FILE": "{tmp}/prices.json"},
        setup=_huge_price,
    ),
]


def _files(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` with its mode, size and modification time (links not followed)."""
    out = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            st = os.lstat(os.path.join(directory, name))
            out[os.path.relpath(os.path.join(directory, name), root)] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
            )
    return out


def _environment(tmp: Path, case: Case) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVABILITY_"))}
    if "PYTHONPATH" not in os.environ:
        env.pop("PYTHONPATH", None)
    env.update(
        XDG_DATA_HOME=str(tmp / "xdg"),
        OBSERVABILITY_EXPORTER="none",
        OBSERVABILITY_AUDIT_PATH=str(tmp / "audit" / "events.log"),
    )
    env.update({k: v.replace("{tmp}", str(tmp)) for k, v in case.env.items()})
    return env


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    tmp = tmp_path / "row"
    tmp.mkdir(mode=0o700)
    case.setup(tmp)
    before = _files(tmp)
    if case.command == (APP,):
        argv = [str(BIN / "opentelemetry-instrument"), sys.executable, "-c", APP_CODE]
    else:
        argv = [str(BIN / "nl2sql-obs"), *(part.replace("{tmp}", str(tmp)) for part in case.command)]
    closed = [fd for fd, shut in ((0, case.stdin_closed), (1, case.output == "closed")) if shut]

    def close_fds() -> None:  # in the child, after its stdin/stdout are set up
        for fd in closed:
            os.close(fd)

    try:
        with open("/dev/full", "wb") as full:
            proc = subprocess.run(
                argv,
                env=_environment(tmp, case),
                stdin=subprocess.DEVNULL,
                stdout=full if case.output == "full" else subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=close_fds if closed else None,
                timeout=TIMEOUT_S,
                check=False,
            )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case.id}: no answer within {TIMEOUT_S}s (a hang)")
    out = (proc.stdout or b"").decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-3000:]
    assert proc.returncode == case.exit, err[-3000:]
    assert case.message.replace("{tmp}", str(tmp)) in err, err[-3000:]
    assert case.stdout in out, out[-3000:]
    assert SECRET not in out + err
    if "--json" not in case.command:
        assert "\x1b" not in out, "raw escape sequence printed to the terminal"
    if case.command == (APP,) and case.exit:
        assert "app ran" not in out, "start-up was refused, yet the app ran"
    if not case.writes:
        assert _files(tmp) == before, "a bad input wrote or changed a file"
