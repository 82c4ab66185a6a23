"""The demo's database, catalog and real SQL validation."""

from __future__ import annotations

import sqlite3

import pytest
from nl2sql_observability.demo.catalog import BROKEN_SQL, FALLBACK_SQL, QUESTIONS
from nl2sql_observability.demo.db import SCHEMA, ensure_database
from nl2sql_observability.demo.validate import validate_sql


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return ensure_database(tmp_path_factory.mktemp("db") / "demo.sqlite3")


def test_database_has_related_tables_with_thousands_of_rows(db):
    conn = sqlite3.connect(db)
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in SCHEMA}
    assert counts["orders"] >= 2000
    assert counts["order_items"] >= 4000
    orphans = conn.execute(
        "SELECT COUNT(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL"
    ).fetchone()[0]
    assert orphans == 0
    for table, columns in SCHEMA.items():
        actual = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        assert actual == list(columns)


def test_database_is_deterministic_and_reused(tmp_path, db):
    other = ensure_database(tmp_path / "again.sqlite3")
    q = "SELECT SUM(quantity * unit_price) FROM order_items"
    assert sqlite3.connect(other).execute(q).fetchone() == sqlite3.connect(db).execute(q).fetchone()
    mtime = other.stat().st_mtime_ns
    assert ensure_database(other) == other
    assert other.stat().st_mtime_ns == mtime


def test_stale_database_is_rebuilt(tmp_path):
    path = tmp_path / "stale.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE junk (x)").connection.commit()
    ensure_database(path)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM customers").fetchone()[0] > 0


@pytest.mark.parametrize("sql", [*QUESTIONS.values(), FALLBACK_SQL])
def test_catalog_sql_validates_and_runs(db, sql):
    assert validate_sql(sql, SCHEMA).ok, validate_sql(sql, SCHEMA)
    sqlite3.connect(db).execute(sql).fetchall()


@pytest.mark.parametrize(("kind", "sql"), [(k, s) for k, sqls in BROKEN_SQL.items() for s in sqls])
def test_broken_sql_fails_with_its_kind(kind, sql):
    result = validate_sql(sql, SCHEMA)
    assert not result.ok
    assert result.error_type == kind
    assert result.message


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT name FROM customers; DROP TABLE orders", "multiple_statements"),
        ("SELECT * FROM invoices", "unknown_table"),
        ("INSERT INTO orders VALUES (1, 1, '2025-01-01', 'x')", "forbidden_write"),
        ("WITH t AS (SELECT id FROM orders) SELECT id FROM t", None),
    ],
)
def test_more_validation_cases(sql, kind):
    result = validate_sql(sql, SCHEMA)
    assert result.error_type == kind
