"""`nl2sql-obs demo`: --db never destroys a file that is not the demo database, bad paths and absurd
request counts are refused up front with one message (exit 2), files it creates are owner-only."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from nl2sql_observability.cli import main as cli_main
from nl2sql_observability.cli.demo import MAX_REQUESTS
from nl2sql_observability.demo.db import check_db_path, ensure_database

CLI = "import sys; from nl2sql_observability.cli import main; sys.exit(main())"


@pytest.fixture(autouse=True)
def _no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVABILITY_EXPORTER", "none")


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


def _demo(*args: str) -> list[str]:
    return ["demo", "--requests", "1", "--time-scale", "0", "--no-progress", *args]


@pytest.mark.parametrize("kind", ["text", "audit_db"])
def test_db_refuses_to_overwrite_a_file_that_is_not_the_demo_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = tmp_path / "precious"
    if kind == "text":
        target.write_text("my notes\n")
    else:
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE audit_events (event_id TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO audit_events VALUES ('e1')")
        conn.commit()
        conn.close()
    before = target.read_bytes()
    assert cli_main(_demo("--db", str(target))) == 2
    err = capsys.readouterr().err
    assert f"--db {target} exists and is not the demo database" in err
    assert "--force" in err
    assert "Traceback" not in err
    assert target.read_bytes() == before
    assert check_db_path(target, force=True) is None  # --force lets it through


def test_the_demo_database_itself_is_accepted_and_owner_only(tmp_path: Path) -> None:
    target = ensure_database(tmp_path / "sub" / "demo.sqlite3")
    assert check_db_path(target) is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "is a directory"),
        (lambda p: _file(p / "file") / "demo.db", "is not a directory"),
    ],
)
def test_db_at_a_directory_or_an_impossible_path_is_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, message: str
) -> None:
    assert cli_main(_demo("--db", str(make(tmp_path)))) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_summary_json_at_a_directory_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(_demo("--summary-json", str(tmp_path))) == 2
    captured = capsys.readouterr()
    assert "--summary-json" in captured.err
    assert "is a directory" in captured.err
    assert captured.out == ""  # refused up front, nothing was run


def test_an_absurd_request_count_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["demo", "--requests", "99999999999999999999"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--requests" in err
    assert f"0 to {MAX_REQUESTS:,}" in err


def test_files_the_demo_creates_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    summary = tmp_path / "out" / "summary.json"
    # In a subprocess: a full demo run configures logging and telemetry for its whole process.
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *_demo("--db", str(db), "--summary-json", str(summary))],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OBSERVABILITY_EXPORTER": "none"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600
