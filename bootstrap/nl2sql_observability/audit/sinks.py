"""Audit sinks: a rotated JSONL file safe for many writer processes, and SQLite (WAL).

A PostgreSQL sink would implement `AuditSink` (write one event, durable when `write` returns; query by
`Filters`; `search` the most recent matches), with the same columns and indexes as `SqliteSink`.

Why not `logging.handlers.RotatingFileHandler`: each process decides to rotate on its own view of
the file and renames it underneath the others, so with several workers lines are lost, rotated files
are overwritten and writers keep appending to renamed files.
This sink instead, for every event, under an exclusive `flock` on `<path>.lock` (plus a thread lock):
re-opens the file if the path now names another inode (someone rotated), truncates a torn last line
left by a writer that was SIGKILLed in the middle of its `write()`, appends the line with one
`write()` on an `O_APPEND` descriptor, and rotates (`.N-1`→`.N` … path→`.1`) when the size limit is
reached. Readers take the same lock, shared and only while they list and open the files and note
their sizes: that snapshot is then read without blocking any writer. Retention is by age (a rotated
file goes once its newest event is older than the retention) with a disk cap (the oldest files go
first, logged and counted). Local filesystems only (no NFS: `O_APPEND` and `flock` are not reliable).
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from nl2sql_observability.audit.events import (
    FIELDS,
    AuditEvent,
    CorruptEventError,
    Filters,
    decode_line,
    encode_line,
    normalize_event,
)
from nl2sql_observability.audit.retention import cutoff, record_eviction, utc_now

DEFAULT_RETENTION = timedelta(days=30)
# How often (in the sink's clock) a writer checks retention when no rotation triggered it.
RETENTION_CHECK_SECONDS = 60.0
# Events are appended within seconds of their timestamp; a reader that stops at an older file uses
# this margin so an event delayed by a slow writer is still found.
WRITE_DELAY_MARGIN = timedelta(minutes=5)
# A line longer than this is not an audit event (events are capped); readers skip it in bounded memory.
MAX_LINE_BYTES = 8 * 1024 * 1024

Clock = Callable[[], datetime]


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events go. `write` returns only when the event is stored whole."""

    def write(self, event: AuditEvent) -> None: ...

    def query(self, filters: Filters, problems: list[str] | None = None) -> Iterator[AuditEvent]: ...

    def search(self, filters: Filters, limit: int, problems: list[str] | None = None) -> list[AuditEvent]: ...

    def close(self) -> None: ...


def _sort_key(event: AuditEvent) -> tuple[str, str]:
    return str(event.get("timestamp", "")), str(event.get("event_id", ""))


# --- JSONL file -------------------------------------------------------------------------------


def rotated_paths(path: Path, backup_count: int | None = None) -> list[Path]:
    """Existing files of the log, found by listing its directory, oldest first: path.N … path.1, path."""
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


def _numbered(path: Path) -> list[tuple[int, Path]]:
    prefix = path.name + "."
    out = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
            if suffix.isdigit():
                out.append((int(suffix), entry))
    return sorted(out)


def _edge_timestamp(handle: IO[bytes], size: int, *, last: bool) -> str | None:
    """Timestamp of the first or last complete event of a file (None if there is none)."""
    try:
        if not last:
            handle.seek(0)
            line = handle.readline(MAX_LINE_BYTES)
            return str(decode_line(line)["timestamp"]) if line.endswith(b"\n") else None
        end = size
        tail = b""
        while end > 0 and len(tail) < MAX_LINE_BYTES:
            start = max(0, end - 65536)
            handle.seek(start)
            tail = handle.read(end - start) + tail
            end = start
            body = tail.rstrip(b"\n")
            cut = body.rfind(b"\n")
            if cut >= 0 or end == 0:
                return str(decode_line(body[cut + 1 :])["timestamp"])
    except (CorruptEventError, KeyError, OSError):
        return None
    return None


class JsonlFileSink:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backup_count: int | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        max_disk_bytes: int = 0,
        fsync: bool = False,
        clock: Clock = utc_now,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.retention = retention
        self.max_disk_bytes = max_disk_bytes
        self.fsync = fsync
        self.clock = clock
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._pid = -1
        self._next_check: datetime | None = None

    def _open(self) -> None:
        self.close()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._pid = os.getpid()
        self._next_check = None

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
                rotated = bool(self.max_bytes) and os.fstat(fd).st_size >= self.max_bytes
                if rotated:
                    self._rotate()
                now = self.clock()
                if rotated or self._next_check is None or now >= self._next_check:
                    self._next_check = now + timedelta(seconds=RETENTION_CHECK_SECONDS)
                    self._enforce_retention(now)
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
        numbered = _numbered(self.path)
        for number, src in reversed(numbered):
            if self.backup_count is not None and number >= self.backup_count:
                self._delete(src, early=True, reason=f"OBSERVABILITY_AUDIT_BACKUP_COUNT={self.backup_count}")
                continue
            src.rename(self.path.with_name(f"{self.path.name}.{number + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._reopen_file()

    def _enforce_retention(self, now: datetime) -> None:
        """Delete rotated files whose newest event has outlived the retention; rotate the current
        file when its oldest event has; then delete the oldest files while above the disk cap."""
        oldest_allowed = cutoff(now, self.retention)
        numbered = _numbered(self.path)
        kept: list[tuple[Path, int]] = []
        for _, file in reversed(numbered):  # oldest first; once one is young enough, so are the rest
            newest = self._edge(file, last=True) if not kept else None
            if newest is not None and newest < oldest_allowed:
                self._delete(file, early=False, reason="")
                continue
            with contextlib.suppress(OSError):
                kept.append((file, file.stat().st_size))
        assert self._fd is not None
        current_size = os.fstat(self._fd).st_size
        first = self._edge(self.path, last=False) if current_size else None
        if first is not None and first < oldest_allowed:
            self._rotate()  # its events age out with it as a rotated file
            return self._enforce_retention(now)
        if not self.max_disk_bytes:
            return None
        total = current_size + sum(size for _, size in kept)
        while total > self.max_disk_bytes and kept:
            file, size = kept.pop(0)
            self._delete(file, early=True, reason=f"OBSERVABILITY_AUDIT_MAX_DISK_BYTES={self.max_disk_bytes}")
            total -= size
        return None

    @staticmethod
    def _edge(file: Path, *, last: bool) -> str | None:
        try:
            with open(file, "rb") as handle:
                return _edge_timestamp(handle, os.fstat(handle.fileno()).st_size, last=last)
        except OSError:
            return None

    def _delete(self, file: Path, *, early: bool, reason: str) -> None:
        events = 0
        if early:
            with contextlib.suppress(OSError), open(file, "rb") as handle:
                events = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
        if early and events:
            remaining = _numbered(self.path)
            oldest = self._edge(remaining[-1][1], last=False) if remaining else None
            record_eviction(sink="file", path=self.path, events=events, oldest_kept=oldest, reason=reason)

    def snapshot(self) -> list[tuple[Path, IO[bytes], int]]:
        return snapshot_files(self.path)

    def query(self, filters: Filters, problems: list[str] | None = None) -> Iterator[AuditEvent]:
        """Matching events, file by file (oldest file first), from a consistent snapshot."""
        files = snapshot_files(self.path)
        try:
            for file, handle, size in files:
                for event in _read_events(file, handle, size, problems):
                    if filters.match(event):
                        yield event
        finally:
            for _, handle, _ in files:
                handle.close()

    def search(self, filters: Filters, limit: int, problems: list[str] | None = None) -> list[AuditEvent]:
        """The `limit` most recent matching events, oldest first, in memory bounded by `limit`: files
        are read newest first, and reading stops at a file too old to hold any better match."""
        files = snapshot_files(self.path)
        best: list[tuple[tuple[str, str], int, AuditEvent]] = []
        seq = 0
        try:
            for file, handle, size in reversed(files):
                oldest: str | None = None
                for event in _read_events(file, handle, size, problems):
                    ts = str(event.get("timestamp", ""))
                    oldest = ts if oldest is None or ts < oldest else oldest
                    if not filters.match(event):
                        continue
                    seq += 1
                    item = (_sort_key(event), seq, event)
                    if len(best) < limit:
                        heapq.heappush(best, item)
                    elif item[0] > best[0][0]:
                        heapq.heapreplace(best, item)
                if oldest is not None and _older_files_cannot_match(oldest, filters, best, limit):
                    break
        finally:
            for _, handle, _ in files:
                handle.close()
        return [event for _, _, event in sorted(best)]

    def close(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None and self._pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.close(fd)
            setattr(self, name, None)


def _older_files_cannot_match(
    oldest: str, filters: Filters, best: list[tuple[tuple[str, str], int, AuditEvent]], limit: int
) -> bool:
    """Every event of an older file was written before this file's oldest one, so its timestamp is at
    most `oldest` plus the write delay margin."""
    from nl2sql_observability.audit.events import shift_timestamp

    bound = shift_timestamp(oldest, WRITE_DELAY_MARGIN)
    if filters.since is not None and bound < filters.since:
        return True
    return len(best) >= limit and bound < best[0][0][0]


class CorruptLogError(ValueError):
    pass


def snapshot_files(path: Path) -> list[tuple[Path, IO[bytes], int]]:
    """Open every file of the log and note its size, under the writers' lock (shared, briefly), so
    rotation can neither hide nor duplicate an event; the files are then read without the lock."""
    lock_fd: int | None = None
    with contextlib.suppress(OSError):  # no lock file: no writer has run (or a read-only copy)
        lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDONLY | os.O_CLOEXEC)
    opened: list[tuple[Path, IO[bytes], int]] = []
    try:
        if lock_fd is not None:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
        for file in rotated_paths(path):
            try:
                handle: IO[bytes] = open(file, "rb")  # noqa: SIM115 - closed by the caller
            except FileNotFoundError:
                continue
            opened.append((file, handle, os.fstat(handle.fileno()).st_size))
    except BaseException:
        for _, opened_handle, _ in opened:
            opened_handle.close()
        raise
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing releases the lock
    if not opened:
        raise FileNotFoundError(str(path))
    return opened


def _read_events(
    file: Path, handle: IO[bytes], size: int, problems: list[str] | None
) -> Iterator[AuditEvent]:
    """Events of one file up to `size` bytes, in bounded memory. A file with lines but no valid
    event raises `CorruptLogError`; a bad line is skipped and reported in `problems`; a line that is
    not valid UTF-8 is decoded with U+FFFD and reported."""
    valid = 0
    first_error: str | None = None
    handle.seek(0)
    offset = 0
    lineno = 0
    while offset < size:
        raw = handle.readline(min(MAX_LINE_BYTES, size - offset))
        if not raw:
            break
        offset += len(raw)
        lineno += 1
        if not raw.endswith(b"\n") and offset < size:  # over-long line: skip the rest of it
            while raw and not raw.endswith(b"\n") and offset < size:
                raw = handle.readline(min(MAX_LINE_BYTES, size - offset))
                offset += len(raw)
            problem = f"{file} line {lineno}: longer than {MAX_LINE_BYTES} bytes, skipped"
            first_error = first_error or problem
            if problems is not None:
                problems.append(problem)
            continue
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            if problems is not None:
                problems.append(f"{file} line {lineno}: not valid UTF-8; shown with U+FFFD for the bad bytes")
        try:
            event = normalize_event(decode_line(text))
        except CorruptEventError as exc:
            problem = f"{file} line {lineno}: {exc}"
            first_error = first_error or problem
            if problems is not None and raw.endswith(b"\n"):  # an unterminated last line: a write in flight
                problems.append(problem + " (skipped)")
            continue
        valid += 1
        yield event
    if valid == 0 and first_error is not None:
        raise CorruptLogError(f"{file} is not an audit log ({first_error})")


def iter_file_events(path: Path, backup_count: int | None = None) -> Iterator[tuple[AuditEvent, Path]]:
    """Events of the log and its rotated files, oldest file first (see `_read_events`)."""
    del backup_count  # rotated files are found by listing, whatever count wrote them
    files = snapshot_files(path)
    try:
        for file, handle, size in files:
            for event in _read_events(file, handle, size, None):
                yield event, file
    finally:
        for _, handle, _ in files:
            handle.close()


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
    error_message TEXT,
    kind TEXT,
    service_name TEXT,
    outcome TEXT,
    correction_attempts INTEGER,
    evaluation TEXT
);
CREATE INDEX IF NOT EXISTS audit_events_trace_id ON audit_events (trace_id);
CREATE INDEX IF NOT EXISTS audit_events_timestamp ON audit_events (timestamp);
CREATE INDEX IF NOT EXISTS audit_events_tenant_timestamp ON audit_events (tenant_id, timestamp);
"""
# Columns added after the first schema: added to an older database when it is opened for writing, read
# as NULL from one opened read-only.
_ADDED_COLUMNS = {
    "kind": "TEXT",
    "service_name": "TEXT",
    "outcome": "TEXT",
    "correction_attempts": "INTEGER",
    "evaluation": "TEXT",
}
_INSERT = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608
# Retention deletes in batches this small so a writer never holds the write lock for long, and at
# most this many batches per write.
DELETE_BATCH = 500
MAX_BATCHES_PER_CHECK = 10
_DELETE_OLDER = (
    "DELETE FROM audit_events WHERE rowid IN"
    " (SELECT rowid FROM audit_events WHERE timestamp < ? ORDER BY timestamp LIMIT ?)"
)
_DELETE_OLDEST = (
    "DELETE FROM audit_events WHERE rowid IN (SELECT rowid FROM audit_events ORDER BY timestamp LIMIT ?)"
)


def _row(event: AuditEvent) -> tuple[Any, ...]:
    tokens = event.get("tokens") or {}
    flat = dict(event, **{column: tokens.get(key) for column, key in TOKEN_COLUMNS.items()})
    if flat.get("evaluation") is not None:
        flat["evaluation"] = json.dumps(flat["evaluation"], separators=(",", ":"))
    return tuple(flat.get(c) for c in COLUMNS)


def _event(row: sqlite3.Row) -> AuditEvent:
    data = dict(row)
    tokens = {key: data.pop(column) for column, key in TOKEN_COLUMNS.items()}
    return {**{k: data[k] for k in COLUMNS if k in data}, "tokens": tokens}


def _reorder(event: AuditEvent) -> AuditEvent:
    return normalize_event({k: event.get(k) for k in FIELDS})


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
    def __init__(
        self,
        path: Path,
        *,
        fsync: bool = False,
        retention: timedelta = DEFAULT_RETENTION,
        max_disk_bytes: int = 0,
        clock: Clock = utc_now,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.retention = retention
        self.max_disk_bytes = max_disk_bytes
        self.clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._next_check: datetime | None = None
        self._select = ", ".join(COLUMNS)

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
            if self.path.is_dir():
                raise IsADirectoryError(21, "is a directory", str(self.path))
            uri = f"file:{self.path}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.text_factory = _text
        conn.execute("PRAGMA busy_timeout = 30000")
        if create:
            # Freed pages go back to the file system after retention deletes (new databases only:
            # auto_vacuum must be chosen before the first table).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA journal_size_limit = 16777216")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'NORMAL'}")
            conn.executescript(_SCHEMA)
        present = {row[1] for row in conn.execute("PRAGMA table_info(audit_events)")}
        for column, sql_type in _ADDED_COLUMNS.items():
            if column not in present and create:
                conn.execute(f"ALTER TABLE audit_events ADD COLUMN {column} {sql_type}")
                present.add(column)
        self._select = ", ".join(c if c in present else f"NULL AS {c}" for c in COLUMNS)
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def write(self, event: AuditEvent) -> None:
        with self._lock:
            conn = self._connect(create=True)
            conn.execute(_INSERT, _row(event))  # autocommit: durable (WAL) when this returns
            now = self.clock()
            if self._next_check is None or now >= self._next_check:
                self._next_check = now + timedelta(seconds=RETENTION_CHECK_SECONDS)
                self._enforce_retention(conn, now)

    def _enforce_retention(self, conn: sqlite3.Connection, now: datetime) -> None:
        """Delete events older than the retention, then the oldest while above the disk cap, in
        small batches (each its own short transaction; the indexes stay)."""
        oldest_allowed = cutoff(now, self.retention)
        budget = MAX_BATCHES_PER_CHECK  # a backlog is worked off over several writes, never in one
        while budget and conn.execute(_DELETE_OLDER, (oldest_allowed, DELETE_BATCH)).rowcount >= DELETE_BATCH:
            budget -= 1
        if self.max_disk_bytes:
            evicted = 0
            while budget and self._used_bytes(conn) > self.max_disk_bytes:
                budget -= 1
                deleted = conn.execute(_DELETE_OLDEST, (DELETE_BATCH,)).rowcount
                if deleted <= 0:
                    break
                evicted += deleted
            if evicted:
                row = conn.execute("SELECT min(timestamp) FROM audit_events").fetchone()
                record_eviction(
                    sink="sqlite",
                    path=self.path,
                    events=evicted,
                    oldest_kept=row[0] if row else None,
                    reason=f"OBSERVABILITY_AUDIT_MAX_DISK_BYTES={self.max_disk_bytes}",
                )
        conn.execute("PRAGMA incremental_vacuum")
        if not budget:
            self._next_check = now  # more to do: continue at the next write

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection) -> int:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def _where(self, filters: Filters) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        for column, value, op in (
            ("trace_id", filters.trace_id, "="),
            ("timestamp", filters.since, ">="),
            ("timestamp", filters.until, "<="),
            ("tenant_id", filters.tenant, "="),
            ("node", filters.node, "="),
            ("status", filters.status, "="),
            ("outcome", filters.outcome, "="),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if filters.kind is not None:
            where.append("coalesce(kind, 'llm_call') = ?")
            params.append(filters.kind)
        if filters.trace_ids is not None:
            ids = sorted(filters.trace_ids)
            where.append(f"trace_id IN ({', '.join('?' for _ in ids)})" if ids else "0")
            params.extend(ids)
        return (" WHERE " + " AND ".join(where)) if where else "", params

    def _reader(self) -> sqlite3.Connection:
        return self._connect(create=False) if self._conn is None else self._connect(create=True)

    def query(self, filters: Filters, problems: list[str] | None = None) -> Iterator[AuditEvent]:
        """Matching events, oldest first, streamed from one consistent read (one SELECT)."""
        where, params = self._where(filters)
        with self._lock:
            reader = self._reader()
            sql = f"SELECT {self._select} FROM audit_events{where} ORDER BY timestamp, event_id"  # noqa: S608
            cursor = reader.execute(sql, params)
        for row in cursor:
            yield _reorder(_event(row))

    def search(self, filters: Filters, limit: int, problems: list[str] | None = None) -> list[AuditEvent]:
        """The `limit` most recent matching events, oldest first (SQL `LIMIT`)."""
        where, params = self._where(filters)
        with self._lock:
            reader = self._reader()
            sql = (
                f"SELECT {self._select} FROM audit_events{where}"  # noqa: S608 - fixed column names
                " ORDER BY timestamp DESC, event_id DESC LIMIT ?"
            )
            rows = reader.execute(sql, [*params, limit]).fetchall()
        return [_reorder(_event(row)) for row in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _text(value: bytes) -> str:
    """TEXT columns holding bytes that are not UTF-8 (a damaged or hand-edited row) still read."""
    return value.decode("utf-8", "replace")
