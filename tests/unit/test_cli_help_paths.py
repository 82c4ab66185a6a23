"""Every CLI help that mentions a default path prints that path (as this environment resolves it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nl2sql_observability.cli import main


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [("audit", "show"), ("audit", "search")])
def test_audit_help_prints_the_default_log_paths(
    command: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at the terminal width, even inside paths
    text = _help(capsys, *command)
    audit_dir = tmp_path / "data" / "nl2sql-observability" / "audit"
    assert str(audit_dir / "events.log") in text
    assert str(audit_dir / "events.db") in text


def test_demo_help_prints_the_default_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at the terminal width, even inside paths
    text = _help(capsys, "demo")
    assert str(tmp_path / "data" / "nl2sql-observability" / "demo.sqlite3").replace(
        "-", "- "
    ) in text.replace("-", "- ")
