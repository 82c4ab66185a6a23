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
import errno
import fcntl
import heapq
import json
import os
import re
import sqlite3
import stat
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
    instant,
    normalize_event,
    order_key,
)
from nl2sql_observability.audit.retention import cutoff, record_eviction, utc_now

DEFAULT_RETENTION = timedelta(days=30)
# A timestamp later than the sink's clock by more than this was written by a clock that was ahead.
FUTURE_TOLERANCE = timedelta(minutes=5)
# An event dated this much before the newest one written means the clock stepped back: the writer
# starts a new file, so a file's events are never dated much after its last one (readers rely on it).
STEP_BACK = timedelta(minutes=5)
# The lock file's first bytes: "<inode of the current file> <its newest timestamp>".
_NOTE_BYTES = 64
# How often (in the sink's clock) a writer checks retention when no rotation triggered it.
RETENTION_CHECK_SECONDS = 60.0
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


class AuditPathError(OSError):
    """The audit path cannot be used safely (a symlink, not a regular file, a directory others may
    write to); the message says what is wrong and how to fix it."""


class CorruptLogError(ValueError):
    pass


# Bound what a FIFO or device named by mistake can do: opened non-blocking, then refused by fstat.
_NOBLOCK = os.O_NONBLOCK | os.O_CLOEXEC


def _check_regular(fd: int, path: Path) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise AuditPathError(errno.EINVAL, f"{path} is {kind}, not a regular file; give the audit log file")


def open_for_append(path: Path) -> int:
    """The audit file opened for appending, created 0600: never through a symlink (another user could
    point it at any file of ours), never a FIFO or device (it would block the app's LLM call)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | _NOBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AuditPathError(
                errno.ELOOP,
                f"{path} is a symbolic link; the audit log never writes through one:"
                " set OBSERVABILITY_AUDIT_PATH to the real file",
            ) from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise AuditPathError(
                errno.ENXIO, f"{path} is a FIFO, not a regular file; give the audit log file"
            ) from None
        raise
    _check_regular(fd, path)
    return fd


def open_for_read(path: Path) -> IO[bytes]:
    """A file of the log opened for reading without blocking on a FIFO (refused: not a regular file)."""
    fd = os.open(path, os.O_RDONLY | _NOBLOCK)
    _check_regular(fd, path)
    return os.fdopen(fd, "rb")


def prepare_directory(directory: Path) -> None:
    """Create the audit directory owner-only; refuse an existing one that group or others may write
    to (they could swap the files or plant links), with the command that fixes it."""
    created = not directory.exists()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = directory.stat().st_mode
    if mode & 0o022:
        if created:  # ours: an inherited default ACL or a permissive umask does not decide
            directory.chmod(0o700)
            return
        raise AuditPathError(
            errno.EACCES,
            f"audit directory {directory} is writable by group or others (mode {stat.S_IMODE(mode):04o}):"
            f" run `chmod go-w {directory}` or set OBSERVABILITY_AUDIT_PATH to a file in an owner-only"
            " directory",
        )


def audit_path_problem(path: Path) -> str | None:
    """Why the audit log cannot be written at `path` safely (None if it can), checked without
    creating anything: a symbolic link, something that is not a regular file, a directory that
    group or others may write to."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if mode is not None and stat.S_ISLNK(mode):
        return f"{path} is a symbolic link; the audit log never writes through one: give the real file"
    if mode is not None and stat.S_ISDIR(mode):
        return f"{path} is a directory, not a regular file: give a file path such as {path / 'events.log'}"
    if mode is not None and not stat.S_ISREG(mode):
        return f"{path} is a FIFO, socket or device, not a regular file"
    directory = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if directory is not None and directory == path.parent:
        dir_mode = directory.stat().st_mode
        if dir_mode & 0o022:
            return (
                f"audit directory {directory} is writable by group or others (mode"
                f" {stat.S_IMODE(dir_mode):04o}): run `chmod go-w {directory}` or choose a file in an"
                " owner-only directory"
            )
    return None


def _sort_key(event: AuditEvent, seq: int) -> tuple[datetime, int]:
    """By instant, then by write sequence (events of the same millisecond stay in write order)."""
    return order_key(event), seq


# Events we wrote start with these fields in this order; the timestamp is read without parsing the
# line, so lines outside a search's window are skipped cheaply.
_TIMESTAMP_PREFIX = re.compile(
    rb'\{"schema_version":\d+,"event_id":"[^"\\]{1,64}","timestamp":"([^"\\]{1,40})"'
)


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
        prepare_directory(self.path.parent)
        try:
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _NOBLOCK, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AuditPathError(
                    errno.ELOOP, f"{self._lock_path} is a symbolic link; remove it"
                ) from None
            raise
        _check_regular(lock_fd, self._lock_path)
        self._lock_fd = lock_fd
        self._fd = open_for_append(self.path)
        self._pid = os.getpid()
        self._next_check = None

    def _reopen_file(self) -> int:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._fd = open_for_append(self.path)
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
                fd = self._rotate_after_step_back(fd, line)
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

    def _rotate_after_step_back(self, fd: int, line: bytes) -> int:
        """Rotate before writing an event dated more than `STEP_BACK` before the newest event of the
        current file (the clock stepped back). So within one file no event is dated more than
        `STEP_BACK` after the file's last one, which lets `search` judge a file by its last line and
        still find every event of a wrong clock. The newest timestamp of the current file is kept,
        with its inode, at the start of the lock file, which every writer holds while it writes: two
        small system calls per event instead of reading the file's last line."""
        prefix = _TIMESTAMP_PREFIX.match(line, 0, 256)
        text = prefix.group(1).decode("ascii", "replace") if prefix else ""
        when = instant(text)
        if when is None:
            return fd
        on_disk = os.fstat(fd)
        inode = on_disk.st_ino
        newest = self._file_newest(inode) if on_disk.st_size else None
        if newest is not None and when < newest - STEP_BACK:
            self._rotate()
            fd = self._current_fd()
            inode, newest = os.fstat(fd).st_ino, None
        if newest is None or when > newest:
            self._note_newest(inode, text)
        return fd

    def _file_newest(self, inode: int) -> datetime | None:
        assert self._lock_fd is not None
        with contextlib.suppress(OSError, ValueError):
            noted_inode, noted = os.pread(self._lock_fd, _NOTE_BYTES, 0).split()[:2]
            if int(noted_inode) == inode:
                return instant(noted.decode("ascii"))
        return instant(self._edge(self.path, last=True))  # not noted (an older writer): read it once

    def _note_newest(self, inode: int, timestamp: str) -> None:
        assert self._lock_fd is not None
        with contextlib.suppress(OSError):
            os.pwrite(self._lock_fd, f"{inode} {timestamp}\n".ljust(_NOTE_BYTES).encode(), 0)

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
        with open_for_read(self.path) as reader:
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
        file when its oldest event has; then delete the oldest files while above the disk cap.

        Each rotated file is judged on its own. A newest event dated after `now` (a clock that was
        ahead when it was written) is not believed: the file was written before every newer file, so
        it is judged by the newest believable event of the files rotated after it."""
        oldest_allowed = instant(cutoff(now, self.retention))
        assert oldest_allowed is not None
        assert self._fd is not None
        believable_until = now + FUTURE_TOLERANCE if now.year < 9999 else now
        current_size = os.fstat(self._fd).st_size
        first = instant(self._edge(self.path, last=False)) if current_size else None
        if first is not None and first < oldest_allowed:
            self._rotate()  # its events age out with it as a rotated file
            return self._enforce_retention(now)
        bound = first if first is not None and first <= believable_until else None
        kept: list[tuple[Path, int]] = []
        for _, file in _numbered(self.path):  # newest rotated file first
            newest = instant(self._edge(file, last=True))
            if newest is not None and newest > believable_until:
                newest = bound
            elif newest is not None:
                bound = newest if bound is None else min(bound, newest)
            if newest is not None and newest < oldest_allowed:
                self._delete(file, early=False, reason="")
                continue
            with contextlib.suppress(OSError):
                kept.append((file, file.stat().st_size))
        kept.reverse()  # oldest first: the disk cap deletes from there
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
            with open_for_read(file) as handle:
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
        """Matching events in write order (oldest file first), from a consistent snapshot. A file that
        holds no audit event is reported in `problems` and skipped; `CorruptLogError` only when no
        file of the log holds one."""
        files = snapshot_files(self.path, problems)
        try:
            for event in _read_log(files, problems, skip=lambda ts: _outside(filters, ts)):
                if filters.match(event):
                    yield event
        finally:
            for _, handle, _ in files:
                handle.close()

    def search(self, filters: Filters, limit: int, problems: list[str] | None = None) -> list[AuditEvent]:
        """The `limit` most recent matching events (by instant, then write order), oldest first.

        Files are read newest first. A file is skipped, by its last line alone, when even that plus
        `STEP_BACK` is before `--since` or before the `limit` best found so far: writers start a new
        file when the clock steps back, so no event of the file is dated later than that. Every file
        is considered (an older file may hold later timestamps after a clock step), memory stays
        bounded by `limit`, and a line outside the window is skipped by its timestamp unparsed."""
        files = snapshot_files(self.path, problems)
        best: list[tuple[tuple[datetime, int], AuditEvent]] = []
        since = instant(filters.since) if filters.since is not None else None

        def worse_than_best(when: datetime | None) -> bool:
            return len(best) >= limit and when is not None and when < best[0][0][0]

        def skip(timestamp: str) -> bool:
            return _outside(filters, timestamp) or worse_than_best(instant(timestamp))

        reader = _LogReader(problems)
        try:
            for index in reversed(range(len(files))):
                file, handle, size = files[index]
                last = instant(_edge_timestamp(handle, size, last=True))
                latest = last + STEP_BACK if last is not None and last.year < 9999 else None
                if latest is not None and ((since is not None and latest < since) or worse_than_best(latest)):
                    reader.good = True
                    continue
                for line_no, event in enumerate(reader.events(file, handle, size, skip)):
                    if not filters.match(event):
                        continue
                    item = (_sort_key(event, (index << 32) + line_no), event)
                    if len(best) < limit:
                        heapq.heappush(best, item)
                    elif item[0] > best[0][0]:
                        heapq.heapreplace(best, item)
            reader.finish()
        finally:
            for _, handle, _ in files:
                handle.close()
        return [event for _, event in sorted(best, key=lambda item: item[0])]

    def close(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None and self._pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.close(fd)
            setattr(self, name, None)


def snapshot_files(path: Path, problems: list[str] | None = None) -> list[tuple[Path, IO[bytes], int]]:
    """Open every file of the log and note its size, under the writers' lock (shared, briefly), so
    rotation can neither hide nor duplicate an event; the files are then read without the lock.
    A rotated name that is not a regular file is reported in `problems` and skipped."""
    lock_fd: int | None = None
    with contextlib.suppress(OSError):  # no lock file: no writer has run (or a read-only copy)
        lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDONLY | _NOBLOCK)
        if not stat.S_ISREG(os.fstat(lock_fd).st_mode):  # not a lock file of ours: do without
            os.close(lock_fd)
            lock_fd = None
    opened: list[tuple[Path, IO[bytes], int]] = []
    try:
        if lock_fd is not None:
            _lock_shared(lock_fd, path)
        for file in rotated_paths(path):
            try:
                handle: IO[bytes] = open_for_read(file)
            except FileNotFoundError:
                continue
            except AuditPathError:
                if file == path:
                    raise
                if problems is not None:
                    problems.append(f"{file} is not a regular file; skipped")
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


# A writer holds the lock for one append (milliseconds); longer means a stopped or hung writer.
READER_LOCK_WAIT_SECONDS = 10.0


def _lock_shared(lock_fd: int, path: Path) -> None:
    """Take the readers' shared lock, waiting at most `READER_LOCK_WAIT_SECONDS`. The blocking
    `flock` runs in a helper thread on a duplicate descriptor (a non-blocking poll would starve
    behind busy writers); if we stop waiting, the helper lets go of the lock as soon as it gets it."""
    helper_fd = os.dup(lock_fd)
    given_up = threading.Event()
    done = threading.Event()

    def take() -> None:
        try:
            fcntl.flock(helper_fd, fcntl.LOCK_SH)
            if given_up.is_set():
                fcntl.flock(helper_fd, fcntl.LOCK_UN)
        except OSError:
            pass
        finally:
            os.close(helper_fd)
            done.set()

    threading.Thread(target=take, name="nl2sql-audit-lock", daemon=True).start()
    if not done.wait(READER_LOCK_WAIT_SECONDS):
        given_up.set()
        raise AuditPathError(
            errno.EAGAIN,
            f"{path}: a writer has held the log's lock for over {READER_LOCK_WAIT_SECONDS:g}s"
            " (a stopped process?); try again, or find it with `fuser` on the .lock file",
        )


def _outside(filters: Filters, timestamp: str) -> bool:
    """A line whose timestamp names a time outside the window (one naming no time is read in full,
    so that it is reported)."""
    return instant(timestamp) is not None and not filters.in_window(timestamp)


class _LogReader:
    """Reads the files of one log: a file with lines but no audit event is reported in `problems`
    and skipped, so it cannot hide the others; `finish` raises `CorruptLogError` if no file held an
    event and one was such a file (e.g. --path names some other file)."""

    def __init__(self, problems: list[str] | None) -> None:
        self.problems = problems
        self.bad: str | None = None
        self.good = False

    def events(
        self, file: Path, handle: IO[bytes], size: int, skip: Callable[[str], bool] | None = None
    ) -> Iterator[AuditEvent]:
        try:
            for event in _read_events(file, handle, size, self.problems, skip):
                self.good = True
                yield event
        except CorruptLogError as exc:
            self.bad = self.bad or str(exc)
            if self.problems is not None:
                self.problems.append(f"{exc}; skipped")
        else:
            self.good = self.good or size > 0

    def finish(self) -> None:
        if self.bad is not None and not self.good:
            raise CorruptLogError(self.bad)


def _read_log(
    files: list[tuple[Path, IO[bytes], int]],
    problems: list[str] | None,
    skip: Callable[[str], bool] | None = None,
) -> Iterator[AuditEvent]:
    """Events of every file, in write order (see `_LogReader`)."""
    reader = _LogReader(problems)
    for file, handle, size in files:
        yield from reader.events(file, handle, size, skip)
    reader.finish()


def _read_events(
    file: Path,
    handle: IO[bytes],
    size: int,
    problems: list[str] | None,
    skip: Callable[[str], bool] | None = None,
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
        if skip is not None and raw.endswith(b"\n"):
            prefix = _TIMESTAMP_PREFIX.match(raw, 0, 256)
            if prefix is not None and skip(prefix.group(1).decode("ascii", "replace")):
                valid += 1  # an event of ours, outside what the caller wants
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
        if problems is not None and instant(event.get("timestamp")) is None:
            problems.append(
                f"{file} line {lineno}: timestamp {event.get('timestamp')!r} is not an ISO 8601 time"
                " (no --since/--until matches it)"
            )
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
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _NOBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AuditPathError(
                errno.ELOOP,
                f"{path} is a symbolic link; the audit database is never opened through one:"
                " set OBSERVABILITY_AUDIT_PATH to the real file",
            ) from None
        raise
    _check_regular(fd, path)
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
            prepare_directory(self.path.parent)
            _make_owner_only(self.path)
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        else:
            if not self.path.exists():
                raise FileNotFoundError(str(self.path))
            if self.path.is_dir():
                raise IsADirectoryError(21, "is a directory", str(self.path))
            if not stat.S_ISREG(self.path.stat().st_mode):  # SQLite would block opening a FIFO
                raise AuditPathError(
                    errno.EINVAL, f"{self.path} is a FIFO, socket or device, not a regular file"
                )
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
            # With a disk cap, the write-ahead log is kept to a small part of it (it counts in the cap).
            wal_limit = min(16 << 20, self.max_disk_bytes // 8) if self.max_disk_bytes else 16 << 20
            conn.execute(f"PRAGMA journal_size_limit = {max(wal_limit, 65536)}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, min(1000, wal_limit // 4096))}")
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

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        """Bytes of events on disk: the database's used pages plus its write-ahead log (which grows
        between checkpoints and counts against the disk as much). A WAL over the cap is first
        checkpointed and truncated, which deletes nothing."""
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        used = int((pages - free) * page_size)
        wal = self._wal_bytes()
        if wal and used + wal > self.max_disk_bytes:
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error:
                busy = 1
            if busy:  # a reader pins the log: deleting events would not shrink it now
                return used
            wal = self._wal_bytes()
        return used + wal

    def _wal_bytes(self) -> int:
        try:
            return self.path.with_name(self.path.name + "-wal").stat().st_size
        except OSError:
            return 0

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
            sql = f"SELECT {self._select} FROM audit_events{where} ORDER BY timestamp, rowid"  # noqa: S608
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
                " ORDER BY timestamp DESC, rowid DESC LIMIT ?"
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
