"""Real SQL validation with sqlglot: one read-only SELECT, known tables, resolvable columns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify

__all__ = ["SqlValidationError", "ValidationResult", "validate_sql"]

# error.type values of a failed validation (bounded set: they become metric labels)
SYNTAX_ERROR = "syntax_error"
UNKNOWN_TABLE = "unknown_table"
UNKNOWN_COLUMN = "unknown_column"
FORBIDDEN_WRITE = "forbidden_write"
MULTIPLE_STATEMENTS = "multiple_statements"


class SqlValidationError(Exception):
    """A generated statement was rejected; `error_type` becomes the span's/metric's `error.type`."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    error_type: str | None = None
    message: str | None = None


def validate_sql(sql: str, schema: Mapping[str, Mapping[str, str]]) -> ValidationResult:
    """Parse `sql` as SQLite, require exactly one SELECT over known tables with resolvable columns."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except ParseError as exc:
        return ValidationResult(False, SYNTAX_ERROR, str(exc).splitlines()[0])
    if len(statements) != 1:
        return ValidationResult(False, MULTIPLE_STATEMENTS, f"expected one statement, got {len(statements)}")
    statement = statements[0]
    if not isinstance(statement, exp.Query) or any(
        isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Drop, exp.Create, exp.Alter))
        for node in statement.walk()
    ):
        return ValidationResult(
            False, FORBIDDEN_WRITE, f"only a read-only SELECT is allowed, got {statement.key.upper()}"
        )
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        if table.name not in schema and table.name not in ctes:
            return ValidationResult(False, UNKNOWN_TABLE, f"unknown table {table.name!r}")
    try:
        qualify(
            statement.copy(),
            schema={t: dict(c) for t, c in schema.items()},
            dialect="sqlite",
            validate_qualify_columns=True,
        )
    except OptimizeError as exc:
        return ValidationResult(False, UNKNOWN_COLUMN, str(exc))
    except SqlglotError as exc:  # pragma: no cover - other analysis failures
        return ValidationResult(False, SYNTAX_ERROR, str(exc))
    return ValidationResult(True)
