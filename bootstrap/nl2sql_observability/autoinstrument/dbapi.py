"""`connection.execute()` traced like `cursor.execute()`.

The DB-API instrumentation (sqlite3, mysql, ...) wraps connections in a proxy that traces cursors only;
sqlite3's `Connection.execute`/`executemany` create their cursor in C and so run untraced. Our proxy adds
these two shortcuts as what they are: a traced cursor's call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["patch_dbapi", "unpatch_dbapi"]

_original: Callable[..., Any] | None = None


def patch_dbapi() -> bool:
    """Make the DB-API instrumentation's connection proxies trace `execute`/`executemany`. False when the
    DB-API instrumentation is not installed."""
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
            return self.cursor().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            return self.cursor().executemany(*args, **kwargs)

    original = dbapi.get_traced_connection_proxy

    def get_traced_connection_proxy(
        connection: Any, db_api_integration: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if hasattr(connection, "execute") and hasattr(connection, "executemany"):
            return ExecutingConnectionProxy(connection, db_api_integration)
        return original(connection, db_api_integration, *args, **kwargs)

    _original = original
    dbapi.get_traced_connection_proxy = get_traced_connection_proxy
    return True


def unpatch_dbapi() -> None:
    global _original
    if _original is None:
        return
    from opentelemetry.instrumentation import dbapi

    dbapi.get_traced_connection_proxy = _original
    _original = None
