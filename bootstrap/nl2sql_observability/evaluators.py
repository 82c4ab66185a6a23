"""Evaluators of the SQL a request generated (chat span) or executed (DB span), run after the request.

Built in, deterministic (sqlglot, a core dependency: pure Python, imported only here, off the request
path): `sql_parses` (every statement parses as a SQL statement) and `sql_read_only` (no statement
writes, drops, alters or grants). `register_evaluator(name, fn)` adds one: `fn(question, sql, rows)`
(rows: how many the app fetched, None for generated SQL) returns a label, a score, `(label, score)` or
None (no evaluation). Each result is a `gen_ai.evaluation.result` event in the context of the span that
produced the SQL, and one `nl2sql.evaluations`.

The request's thread only hands its SQL over (a bounded queue; full = dropped and logged at debug):
parsing and emitting happen in one background thread.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from .forksafe import ForkSafeLock

__all__ = [
    "GeneratedSql",
    "Job",
    "evaluate",
    "register_evaluator",
    "sql_in_reply",
    "sql_parses",
    "sql_read_only",
    "submit",
    "use_evaluators",
]

_log = logging.getLogger("nl2sql_observability.evaluators")

PASS: Final = "pass"  # noqa: S105 - an evaluation label, not a password
FAIL: Final = "fail"
MAX_SQL_PER_REQUEST: Final = 16
_SQL_START = re.compile(
    r"^\s*(?:```(?:sql)?\s*)?(SELECT|WITH|INSERT|UPDATE|DELETE|DROP|CREATE|ALTER|GRANT|REVOKE|TRUNCATE|MERGE)\b",
    re.IGNORECASE,
)
_SQL_ARG_KEYS = ("query", "sql", "sql_query", "statement")

Result = str | float | tuple[str | None, float | None] | None
Evaluator = Callable[[str | None, str, int | None], Result]


@dataclass(slots=True)
class GeneratedSql:
    """One SQL text of a request and the span that produced it."""

    sql: str
    trace_id: int
    span_id: int
    rows: int | None = None  # executed SQL: rows the app fetched


@dataclass(frozen=True, slots=True)
class Job:
    question: str | None
    tenant_id: str | None
    sqls: tuple[GeneratedSql, ...]


def sql_in_reply(message: Any) -> list[str]:
    """SQL in a chat reply: tool-call arguments named query/sql/…, else the text if it is SQL."""
    found: list[str] = []
    for call in getattr(message, "tool_calls", None) or ():
        args = call.get("args") if isinstance(call, dict) else None
        if isinstance(args, dict):
            found.extend(
                v for k, v in args.items() if k in _SQL_ARG_KEYS and isinstance(v, str) and v.strip()
            )
    content = getattr(message, "content", None)
    if not found and isinstance(content, str) and _SQL_START.match(content):
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("sql").strip()
        found.append(text)
    return found


# --- the built-in evaluators -----------------------------------------------------------------------


_PARSED_MAX = 1024
_parsed: dict[str, list[Any] | None] = {}  # SQL text -> its statements (None: not SQL); LRU-ish


def _statements(sql: str) -> list[Any] | None:
    """The statements of `sql`, or None when it is not SQL statements. Parsed once per distinct text
    (generated SQL is usually executed as it is; both built-in evaluators read the same parse)."""
    if sql in _parsed:
        return _parsed[sql]
    found = _parse(sql)
    if len(_parsed) >= _PARSED_MAX:
        _parsed.pop(next(iter(_parsed)))
    _parsed[sql] = found
    return found


_SQL_MAX_CHARS = 65_536  # longer text is not parsed (bounded time in the evaluator thread): not SQL


def _parse(sql: str) -> list[Any] | None:
    if len(sql) > _SQL_MAX_CHARS:
        return None
    import sqlglot
    from sqlglot import expressions as exp

    try:
        parsed = [s for s in sqlglot.parse(sql) if s is not None]
    except Exception:  # sqlglot's ParseError, TokenError, and anything a hostile text provokes
        return None
    statement_types = (
        exp.Query,
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Merge,
        exp.Create,
        exp.Drop,
        exp.Alter,
        exp.Grant,
        exp.Revoke,
        exp.TruncateTable,
        exp.Command,
        exp.Describe,
        exp.Show,
        exp.Pragma,
        exp.Set,
        exp.Transaction,
        exp.Commit,
        exp.Use,
        exp.Copy,
        exp.Analyze,
    )
    if not parsed or not all(isinstance(s, statement_types) for s in parsed):
        return None  # e.g. "SELEC x" parses as an alias, not as a statement
    return parsed


def sql_parses(question: str | None, sql: str, rows: int | None) -> Result:
    """`pass` when every statement parses as a SQL statement, else `fail`."""
    return (PASS, 1.0) if _statements(sql) is not None else (FAIL, 0.0)


def sql_read_only(question: str | None, sql: str, rows: int | None) -> Result:
    """`fail` on any statement that writes, drops, alters or grants (or that does not parse)."""
    from sqlglot import expressions as exp

    statements = _statements(sql)
    if statements is None:
        return (FAIL, 0.0)
    writes = (
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Merge,
        exp.Create,
        exp.Drop,
        exp.Alter,
        exp.Grant,
        exp.Revoke,
        exp.TruncateTable,
        exp.Command,
        exp.Into,
        exp.Copy,
    )
    for statement in statements:
        if not isinstance(statement, exp.Query | exp.Describe | exp.Show):
            return (FAIL, 0.0)
        if any(isinstance(node, writes) for node in statement.walk()):
            return (FAIL, 0.0)
    return (PASS, 1.0)


_BUILT_IN: Final[dict[str, Evaluator]] = {"sql_parses": sql_parses, "sql_read_only": sql_read_only}
_registered: dict[str, Evaluator] = {}
_enabled: tuple[str, ...] = tuple(_BUILT_IN)


def register_evaluator(name: str, fn: Evaluator) -> None:
    """Add an evaluator of each SQL a request generated or executed: `fn(question, sql, rows)` returns a
    label, a score, `(label, score)` or None. Raises ValueError for a bad name."""
    from nl2sql_observability.feedback import _NAME

    if not isinstance(name, str) or not _NAME.match(name) or name in _BUILT_IN:
        raise ValueError(
            f"evaluator name {name!r} is not allowed: 1-64 letters, digits, '_', '.', '-' and not a built-in"
        )
    if not callable(fn):
        raise ValueError(f"evaluator {name!r} must be callable")
    _registered[name] = fn


def use_evaluators(names: Iterable[str]) -> None:
    """Which built-in evaluators run (the instrumentor's `OBSERVABILITY_SQL_EVALUATORS`)."""
    global _enabled
    _enabled = tuple(n for n in names if n in _BUILT_IN)


def _normalized(result: Result) -> tuple[str | None, float | None] | None:
    if result is None:
        return None
    if isinstance(result, tuple):
        label, score = result
    elif isinstance(result, str):
        label, score = result, None
    else:
        label, score = None, result
    if label is not None and not isinstance(label, str):
        return None
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        return None
    return label, (float(score) if score is not None else None)


def evaluate(job: Job) -> int:
    """Run every evaluator on every SQL of the job and emit the results; returns how many. Never raises."""
    from nl2sql_observability.feedback import emit_evaluation

    emitted = 0
    evaluators = [(n, _BUILT_IN[n]) for n in _enabled] + list(_registered.items())
    for item in job.sqls:
        for name, fn in evaluators:
            try:
                result = _normalized(fn(job.question, item.sql, item.rows))
                if result is None:
                    continue
                label, score = result
                emit_evaluation(
                    None,
                    trace_id=item.trace_id,
                    span_id=item.span_id,
                    name=name,
                    score=score,
                    label=label,
                    explanation=None,
                    tenant_id=job.tenant_id,
                    negative=label == FAIL or (score is not None and label is None and score < 0.5),
                )
                emitted += 1
            except Exception:
                _log.debug("evaluator %s failed", name, exc_info=True)
    return emitted


_queue: queue.Queue[Job] = queue.Queue(maxsize=1024)
_worker: threading.Thread | None = None
_worker_lock = ForkSafeLock()


def _run() -> None:
    while True:
        job = _queue.get()
        try:
            evaluate(job)
        finally:
            _queue.task_done()


def submit(job: Job) -> bool:
    """Hand a request's SQL to the background evaluator; False when its queue is full. Never blocks."""
    global _worker
    if not job.sqls or (not _enabled and not _registered):
        return False
    try:
        _queue.put_nowait(job)
    except queue.Full:
        _log.debug("evaluator queue full: a request's SQL was not evaluated")
        return False
    if _worker is None or not _worker.is_alive():
        with _worker_lock:
            if _worker is None or not _worker.is_alive():
                _worker = threading.Thread(target=_run, name="nl2sql-evaluators", daemon=True)
                _worker.start()
    return True


def drain(timeout: float = 5.0) -> bool:
    """Wait until the queued jobs are evaluated (tests, exit); True if done in time."""
    import time

    deadline = time.monotonic() + timeout
    while _queue.unfinished_tasks:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
