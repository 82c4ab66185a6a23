"""The demo's SQLite sample database: customers, products, orders, order items (a few thousand rows).

Created on first use, deterministically (same content on every machine), atomically (built in a
temporary file and renamed, so concurrent first runs are safe)."""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from datetime import date, timedelta
from pathlib import Path

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "DatabaseError",
    "check_db_path",
    "default_db_path",
    "ensure_database",
    "schema_columns",
]

SCHEMA_VERSION = "1"

SCHEMA: dict[str, dict[str, str]] = {
    "customers": {
        "id": "INTEGER",
        "name": "TEXT",
        "country": "TEXT",
        "segment": "TEXT",
        "signup_date": "TEXT",
    },
    "products": {"id": "INTEGER", "name": "TEXT", "category": "TEXT", "price": "REAL"},
    "orders": {"id": "INTEGER", "customer_id": "INTEGER", "order_date": "TEXT", "status": "TEXT"},
    "order_items": {
        "id": "INTEGER",
        "order_id": "INTEGER",
        "product_id": "INTEGER",
        "quantity": "INTEGER",
        "unit_price": "REAL",
    },
}

_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL,
                        segment TEXT NOT NULL, signup_date TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
                       price REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     order_date TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE order_items (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id),
                          product_id INTEGER NOT NULL REFERENCES products(id),
                          quantity INTEGER NOT NULL, unit_price REAL NOT NULL);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX items_order ON order_items(order_id);
"""

_COUNTRIES = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "NL", "SE", "ES"]
_SEGMENTS = ["consumer", "smb", "enterprise"]
_CATEGORIES = ["books", "games", "garden", "kitchen", "music", "office", "sports", "toys"]
_STATUSES = ["completed", "completed", "completed", "shipped", "cancelled", "returned"]
_FIRST = ["Ada", "Ben", "Chen", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
_LAST = ["Meyer", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka", "Usman", "Varga"]


def default_db_path() -> Path:
    """`$XDG_DATA_HOME/nl2sql-observability/demo.sqlite3` (default `~/.local/share/...`)."""
    base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base) / "nl2sql-observability" / "demo.sqlite3"


def schema_columns() -> dict[str, dict[str, str]]:
    return {table: dict(cols) for table, cols in SCHEMA.items()}


class DatabaseError(ValueError):
    """The demo database path cannot be used; the message says why and what to do."""


def is_demo_database(path: Path) -> bool:
    """True if `path` is a SQLite file written by this module (any schema version)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                return False
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return False
    return row is not None and set(SCHEMA) <= tables


def check_db_path(path: Path, *, force: bool = False) -> str | None:
    """Why `path` cannot hold the demo database (None if it can): a directory, a parent that is a
    file, or an existing file that is not the demo database (unless `force`)."""
    if path.is_dir():
        return f"--db {path} is a directory; give a file name, e.g. {path / 'demo.sqlite3'}"
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"--db {path}: {parent} is not a directory"
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
        return f"--db {path}: cannot create files in {parent} (permission denied)"
    if path.exists() and not path.is_file():  # SQLite would block opening a FIFO
        return f"--db {path} is a FIFO, socket or device, not a regular file; give a file name"
    if not path.exists():
        problem = _cannot_create_in(path)
        if problem:
            return problem
    if path.exists() and not force and not is_demo_database(path):
        return (
            f"--db {path} exists and is not the demo database; refusing to overwrite it"
            " (choose another path, or add --force to replace it)"
        )
    return None


def _cannot_create_in(path: Path) -> str | None:
    """Why no file can be created next to `path` (None if one can): permission bits say too little
    for root (e.g. under /proc), so try it — creating the directories the demo would create anyway."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(prefix=".demo-probe-", dir=path.parent):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        return f"--db {path}: cannot create files in {path.parent} ({reason}); choose another path"
    return None


def _is_current(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            return row is not None and row[0] == SCHEMA_VERSION
    except sqlite3.Error:
        return False


def _populate(conn: sqlite3.Connection) -> None:
    rng = random.Random(20260113)  # noqa: S311 - sample data, not crypto. Fixed: the same database everywhere, whatever the demo seed
    conn.executescript(_DDL)
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    start = date(2025, 1, 1)
    customers = [
        (
            i,
            f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            rng.choice(_COUNTRIES),
            rng.choice(_SEGMENTS),
            (start - timedelta(days=rng.randrange(900))).isoformat(),
        )
        for i in range(1, 401)
    ]
    products = [
        (i, f"{cat.title()} item {i}", cat, round(rng.uniform(3, 250), 2))
        for i, cat in ((i, rng.choice(_CATEGORIES)) for i in range(1, 121))
    ]
    orders = [
        (
            i,
            rng.randrange(1, 401),
            (start + timedelta(days=rng.randrange(365))).isoformat(),
            rng.choice(_STATUSES),
        )
        for i in range(1, 2501)
    ]
    items = []
    item_id = 1
    for order_id, *_ in orders:
        for _ in range(rng.randint(1, 3)):
            product = products[rng.randrange(len(products))]
            items.append((item_id, order_id, product[0], rng.randint(1, 5), product[3]))
            item_id += 1
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", customers)
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", products)
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", orders)
    conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?)", items)
    conn.commit()


def ensure_database(path: Path | None = None) -> Path:
    """Create the sample database at `path` unless a current one is there; return the path."""
    target = Path(path) if path is not None else default_db_path()
    if target.exists() and _is_current(target):
        return target
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file owner-only (0600); os.replace keeps that mode.
    fd, tmp_name = tempfile.mkstemp(prefix=".demo-", suffix=".sqlite3", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp)
        try:
            _populate(conn)
        finally:
            conn.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
