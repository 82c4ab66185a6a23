"""Audit log under hostile conditions: owner-only files, readers that see every event while writers
rotate, bounded memory, age-based retention with a disk cap, one clear message for any bad input."""

from __future__ import annotations

import stat
from pathlib import Path

from nl2sql_observability.audit import AuditLog, AuditSettings
from nl2sql_observability.audit.events import build_event

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
