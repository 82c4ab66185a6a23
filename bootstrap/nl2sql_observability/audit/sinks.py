"""Audit sinks: a rotated JSONL file safe for many writer processes, and SQLite (WAL).

A PostgreSQL sink would implement `AuditSink` (write one event, durable when `write` returns; query by
`Filters`), e.g. with one INSERT per event and the same columns and indexes as `SqliteSink`.

Why not `logging.handlers.RotatingFileHandler`: each process decides to rotate on its own view of
the file and renames it underneath the others, so with several workers lines are lost, rotated files
are overwritten and writers keep appending to renamed files.
This sink instead, for every event, under an exclusive `flock` on `<path>.lock` (plus a thread lock):
re-opens the file if the path now names another inode (someone rotated), truncates a torn last line
left by a writer that was SIGKILLed in the middle of its `write()`, appends the line with one
`write()` on an `O_APPEND` descriptor, and rotates (`.N-1`→`.N` … path→`.1`) when the size limit is
reached. Local filesystems only (no NFS: `O_APPEND` and `flock` are not reliable there).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nl2sql_observability.audit.events import (
    FIELDS,
    AuditEvent,
    CorruptEventError,
    Filters,
    decode_line,
    encode_line,
)


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events go. `write` returns only when the event is stored whole."""

    def write(self, event: AuditEvent) -> None: ...

    def query(self, filters: Filters) -> Iterator[AuditEvent]: ...

    def close(self) -> None: ...


# --- JSONL file -------------------------------------------------------------------------------


def rotated_paths(path: Path, backup_count: int | None = None) -> list[Path]:
    """Existing files of the log, oldest first: path.N … path.1, path."""
    found: list[tuple[int, Path]] = []
    parent = path.parent
    prefix = path.name + "."
    if parent.is_dir():
        for entry in parent.iterdir():
            suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
            if suffix.isdigit() and (backup_count is None or int(suffix) <= backup_count):
                found.append((int(suffix), entry))
    files = [p for _, p in sorted(found, reverse=True)]
    if path.exists():
        files.append(path)
    return files


class JsonlFileSink:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backup_count: int = 5,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.fsync = fsync
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._pid = -1

    def _open(self) -> None:
        self.close()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._pid = os.getpid()

    def _reopen_file(self) -> int:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def write(self, event: AuditEvent) -> None:
        self.write_line(encode_line(event))

    def write_line(self, line: bytes) -> None:
        with self._thread_lock:
            if self._pid != os.getpid() or self._fd is None or self._lock_fd is None:
                self._open()  # first use, or a fork: never share a lock description with the parent
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                fd = self._current_fd()
                self._repair_torn_tail(fd)
                self._write_all(fd, line)
                if self.fsync:
                    os.fsync(fd)
                if self.max_bytes and os.fstat(fd).st_size >= self.max_bytes:
                    self._rotate()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _current_fd(self) -> int:
        assert self._fd is not None
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return self._reopen_file()
        mine = os.fstat(self._fd)
        if (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            return self._reopen_file()
        return self._fd

    @staticmethod
    def _write_all(fd: int, line: bytes) -> None:
        view = memoryview(line)
        written = os.write(fd, view)
        if written != len(line):
            # Short write (disk full, quota): the line is torn. Finish it if we can; the next writer's
            # tail repair removes whatever is left unterminated.
            while written < len(line):
                n = os.write(fd, view[written:])
                if n <= 0:
                    raise OSError("short write to the audit log")
                written += n

    def _repair_torn_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as reader:
            if os.fstat(reader.fileno()).st_ino != os.fstat(fd).st_ino:
                return
            reader.seek(size - 1)
            if reader.read(1) == b"\n":
                return
            # Find the last complete line and cut everything after it.
            end = size
            step = 65536
            while end > 0:
                start = max(0, end - step)
                reader.seek(start)
                chunk = reader.read(end - start)
                idx = chunk.rfind(b"\n")
                if idx >= 0:
                    os.truncate(self.path, start + idx + 1)
                    return
                end = start
            os.truncate(self.path, 0)

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.backup_count}")
        if oldest.exists():
            oldest.unlink()
        for i in range(self.backup_count - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._reopen_file()

    def query(self, filters: Filters) -> Iterator[AuditEvent]:
        for event, _ in iter_file_events(self.path, self.backup_count):
            if filters.match(event):
                yield event

    def close(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None and self._pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.close(fd)
            setattr(self, name, None)


class CorruptLogError(ValueError):
    pass


def iter_file_events(path: Path, backup_count: int | None = None) -> Iterator[tuple[AuditEvent, Path]]:
    """Events of the log and its rotated files, oldest file first. A file with lines but no valid
    event raises `CorruptLogError`; an isolated bad line (e.g. an unterminated last line) is skipped."""
    files = rotated_paths(path, backup_count)
    if not files:
        raise FileNotFoundError(str(path))
    for file in files:
        valid = 0
        first_error: str | None = None
        try:
            handle = open(file, "rb")  # noqa: SIM115 - closed below, generator-friendly
        except FileNotFoundError:
            continue  # rotated away while we were reading
        with handle:
            for lineno, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    event = decode_line(raw)
                except CorruptEventError as exc:
                    if first_error is None:
                        first_error = f"line {lineno}: {exc}"
                    continue
                valid += 1
                yield event, file
        if valid == 0 and first_error is not None:
            raise CorruptLogError(f"{file} is not an audit log ({first_error})")


# --- SQLite -----------------------------------------------------------------------------------

# The contract's fields as columns; `tokens` {input, output, total} becomes three columns.
TOKEN_COLUMNS = {"input_tokens": "input", "output_tokens": "output", "total_tokens": "total"}
COLUMNS = tuple(
    column for field in FIELDS for column in (tuple(TOKEN_COLUMNS) if field == "tokens" else (field,))
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    schema_version INTEGER NOT NULL,
    event_id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    trace_id TEXT,
    span_id TEXT,
    tenant_id TEXT,
    user_id TEXT,
    session_id TEXT,
    node TEXT,
    model TEXT,
    prompt_text TEXT,
    response_text TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    total_tokens INTEGER,
    latency_ms REAL,
    status TEXT,
    error_type TEXT,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS audit_events_trace_id ON audit_events (trace_id);
CREATE INDEX IF NOT EXISTS audit_events_timestamp ON audit_events (timestamp);
CREATE INDEX IF NOT EXISTS audit_events_tenant_timestamp ON audit_events (tenant_id, timestamp);
"""
_INSERT = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608


def _row(event: AuditEvent) -> tuple[Any, ...]:
    tokens = event.get("tokens") or {}
    flat = dict(event, **{column: tokens.get(key) for column, key in TOKEN_COLUMNS.items()})
    return tuple(flat.get(c) for c in COLUMNS)


def _event(row: sqlite3.Row) -> AuditEvent:
    data = dict(row)
    tokens = {key: data.pop(column) for column, key in TOKEN_COLUMNS.items()}
    return {**{k: data[k] for k in COLUMNS if k in data}, "tokens": tokens}


def _reorder(event: AuditEvent) -> AuditEvent:
    return {k: event.get(k) for k in FIELDS}


def _make_owner_only(path: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite gives its -wal and -shm files the
    database file's mode), and tighten the files of a database created before this was done."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            extra = path.with_name(path.name + suffix)
            if extra.stat().st_mode & 0o077:
                extra.chmod(0o600)


class SqliteSink:
    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if create:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _make_owner_only(self.path)
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        else:
            if not self.path.exists():
                raise FileNotFoundError(str(self.path))
            uri = f"file:{self.path}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if create:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'NORMAL'}")
            conn.executescript(_SCHEMA)
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def write(self, event: AuditEvent) -> None:
        with self._lock:
            conn = self._connect(create=True)
            conn.execute(_INSERT, _row(event))  # autocommit: durable (WAL) when this returns

    def query(self, filters: Filters) -> Iterator[AuditEvent]:
        where: list[str] = []
        params: list[Any] = []
        for column, value, op in (
            ("trace_id", filters.trace_id, "="),
            ("timestamp", filters.since, ">="),
            ("timestamp", filters.until, "<="),
            ("tenant_id", filters.tenant, "="),
            ("node", filters.node, "="),
            ("status", filters.status, "="),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = f"SELECT {', '.join(COLUMNS)} FROM audit_events"  # noqa: S608 - fixed column names
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY timestamp, event_id"
        with self._lock:
            conn = self._connect(create=False) if self._conn is None else self._connect(create=True)
            rows = conn.execute(sql, params).fetchall()
        for row in rows:
            yield _reorder(_event(row))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
