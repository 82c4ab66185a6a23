"""What the DB-API instrumentations leave out, for the request's outcome.

- `connection.execute()` traced like `cursor.execute()`: the DB-API instrumentation (sqlite3, mysql, ...)
  wraps connections in a proxy that traces cursors only; sqlite3's `Connection.execute`/`executemany`
  create their cursor in C and so run untraced. Our proxy adds these two shortcuts as what they are: a
  traced cursor's call (returning the traced cursor, so its fetches are counted).
- A failed query: `db.response.status_code` (SQLSTATE, else the driver's error class) on its DB span,
  and a `sql_error` (or `timeout`) for the request. Every traced execution of the DB-API and psycopg
  instrumentations goes through `CursorTracer.traced_execution(_async)`, patched here once.
- Rows: the contrib DB span ends when `execute()` returns, before any fetch. The rows the app fetches
  are counted as it fetches them and put on the span current at that moment (the node's) as
  `db.response.returned_rows`, and the last query's count decides `empty_result`. (Keeping the DB span
  open until the cursor is exhausted or closed would make its duration include the app's own work.)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from opentelemetry import trace

from nl2sql_observability import semconv as sc
from nl2sql_observability.outcome import current_request

__all__ = ["count_rows", "patch_dbapi", "unpatch_dbapi"]

_log = logging.getLogger("nl2sql_observability.autoinstrument")
_FETCHES = ("fetchone", "fetchmany", "fetchall")

_original: Callable[..., Any] | None = None
_restore: list[tuple[Any, str, Any]] = []


def count_rows(result: Any, many: bool) -> Any:
    """Count what a fetch returned for the current request; returns it unchanged. Never raises."""
    try:
        request = current_request()
        if request is not None:
            n = (len(result) if isinstance(result, list | tuple) else 0) if many else int(result is not None)
            rows = request.add_rows(n)
            trace.get_current_span().set_attribute(sc.DB_RESPONSE_RETURNED_ROWS, rows)
    except Exception:  # pragma: no cover - telemetry never breaks the app
        _log.debug("counting rows failed", exc_info=True)
    return result


def _failed(exc: BaseException) -> None:
    request = current_request()
    code = request.sql_failed(exc) if request is not None else None
    if code is None:
        from nl2sql_observability.outcome import db_status_code

        code = db_status_code(exc)
    trace.get_current_span().set_attribute(sc.DB_RESPONSE_STATUS_CODE, code)  # the DB span


def _executing(args: tuple[Any, ...]) -> None:
    """The statement about to run, with its DB span (current here), for the evaluators."""
    try:
        request = current_request()
        if request is not None and args:
            statement = args[0]
            text = statement if isinstance(statement, str) else getattr(statement, "_obj", None)
            if isinstance(text, str):
                request.add_sql(text, trace.get_current_span(), executed=True)
    except Exception:  # pragma: no cover
        _log.debug("recording a statement failed", exc_info=True)


def _ran(cursor: Any) -> None:
    request = current_request()
    if request is not None:
        request.query_ran(getattr(cursor, "description", None) is not None)


def _record(record: Callable[[Any], Any], value: Any) -> None:
    """Note a query's end for the request's outcome; bookkeeping never raises into the app's query."""
    try:
        record(value)
    except Exception:  # pragma: no cover
        _log.debug("recording a query's end failed", exc_info=True)


def _traced(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def traced_execution(
        self: Any, cursor: Any, query_method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        def query(*a: Any, **kw: Any) -> Any:
            _executing(a)
            try:
                result = query_method(*a, **kw)
            except Exception as exc:
                _record(_failed, exc)
                raise
            _record(_ran, cursor)
            return result

        return original(self, cursor, query, *args, **kwargs)

    return traced_execution


def _traced_async(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def traced_execution_async(
        self: Any, cursor: Any, query_method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        async def query(*a: Any, **kw: Any) -> Any:
            _executing(a)
            try:
                result = await query_method(*a, **kw)
            except Exception as exc:
                _record(_failed, exc)
                raise
            _record(_ran, cursor)
            return result

        return await original(self, cursor, query, *args, **kwargs)

    return traced_execution_async


def _set(owner: Any, name: str, value: Any) -> None:
    _restore.append((owner, name, owner.__dict__.get(name)))
    setattr(owner, name, value)


def _counting_fetches(cls: Any, *, is_async: bool) -> None:
    """Count the rows of `cls`'s fetch methods and iteration (patched on the class)."""
    for name in _FETCHES:
        original = getattr(cls, name, None)
        if original is None:
            continue
        many = name != "fetchone"
        if is_async:

            def make_async(fn: Any, many: bool) -> Any:
                async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
                    return count_rows(await fn(self, *args, **kwargs), many)

                return functools.wraps(fn)(fetch)

            _set(cls, name, make_async(original, many))
        else:

            def make(fn: Any, many: bool) -> Any:
                def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
                    return count_rows(fn(self, *args, **kwargs), many)

                return functools.wraps(fn)(fetch)

            _set(cls, name, make(original, many))
    if not is_async and getattr(cls, "__iter__", None) is not None:
        original_iter = cls.__iter__

        def iterate(self: Any) -> Iterator[Any]:
            for row in original_iter(self):
                count_rows(row, False)
                yield row

        _set(cls, "__iter__", iterate)


def _patch_proxy(dbapi: Any) -> None:
    """The DB-API instrumentation's cursor proxy: count fetches and iteration; `execute()` returns the
    proxy where the driver returned its own cursor (sqlite3), so chained fetches are counted too."""
    proxy = dbapi.TracedCursorProxy

    def fetcher(name: str, many: bool) -> Any:
        def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
            return count_rows(getattr(self.__wrapped__, name)(*args, **kwargs), many)

        return fetch

    for name in _FETCHES:
        _set(proxy, name, fetcher(name, name != "fetchone"))

    def iterate(self: Any) -> Iterator[Any]:
        for row in self.__wrapped__:
            count_rows(row, False)
            yield row

    _set(proxy, "__iter__", iterate)
    for name in ("execute", "executemany"):
        original = proxy.__dict__.get(name)
        if original is None:
            continue

        def returning_proxy(fn: Any) -> Any:
            def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
                result = fn(self, *args, **kwargs)
                return self if result is self.__wrapped__ else result

            return functools.wraps(fn)(execute)

        _set(proxy, name, returning_proxy(original))


def _patch_psycopg() -> None:
    try:
        import psycopg
    except ImportError:
        return
    _counting_fetches(psycopg.Cursor, is_async=False)
    _counting_fetches(psycopg.AsyncCursor, is_async=True)


def patch_dbapi() -> bool:
    """Patch the DB-API instrumentation (see the module docstring). False when it is not installed."""
    global _original
    try:
        from opentelemetry.instrumentation import dbapi
    except ImportError:
        return False
    if _original is not None:
        return True
    base: Any = dbapi.TracedConnectionProxy

    class ExecutingConnectionProxy(base):  # type: ignore[misc]
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            cursor = self.cursor()
            cursor.execute(*args, **kwargs)
            return cursor

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            cursor = self.cursor()
            cursor.executemany(*args, **kwargs)
            return cursor

    original = dbapi.get_traced_connection_proxy

    def get_traced_connection_proxy(
        connection: Any, db_api_integration: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if hasattr(connection, "execute") and hasattr(connection, "executemany"):
            return ExecutingConnectionProxy(connection, db_api_integration)
        return original(connection, db_api_integration, *args, **kwargs)

    _original = original
    dbapi.get_traced_connection_proxy = get_traced_connection_proxy
    tracer = dbapi.CursorTracer
    _set(tracer, "traced_execution", _traced(tracer.traced_execution))
    if hasattr(tracer, "traced_execution_async"):
        _set(tracer, "traced_execution_async", _traced_async(tracer.traced_execution_async))
    _patch_proxy(dbapi)
    _patch_psycopg()
    return True


def unpatch_dbapi() -> None:
    global _original
    if _original is None:
        return
    from opentelemetry.instrumentation import dbapi

    dbapi.get_traced_connection_proxy = _original
    _original = None
    while _restore:
        owner, name, previous = _restore.pop()
        if previous is None:
            delattr(owner, name)
        else:
            setattr(owner, name, previous)
