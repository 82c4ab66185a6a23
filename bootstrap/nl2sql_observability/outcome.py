"""The outcome of one request (`nl2sql.outcome`), derived from what its run did.

A `RequestOutcome` lives on the workflow step; the zero-code handler, the DB-API hooks and the explicit
API report into it what happened (a failed or successful query, validation or chat call, the rows the app
fetched), and the workflow step resolves it once when the run ends. The precedence is the contract's
("Outcome"): the app's own outcome, then the exception the run raised, then the last failure no later
success recovered, then the rows of the last query.
"""

from __future__ import annotations

from typing import Final, Literal

from opentelemetry.trace import Span

from nl2sql_observability import semconv as sc
from nl2sql_observability.context import current_step
from nl2sql_observability.evaluators import MAX_SQL_PER_REQUEST, GeneratedSql
from nl2sql_observability.instruments import error_type_of

__all__ = [
    "RequestOutcome",
    "current_request",
    "is_timeout",
    "named_outcome",
    "question_of",
    "set_outcome",
]

Kind = Literal["sql", "validation", "llm"]

# What a success of each kind recovers: a query that ran answers for the SQL that failed before it.
_RECOVERS: Final[dict[str, frozenset[str]]] = {
    "sql": frozenset({"sql", "validation"}),
    "validation": frozenset({"validation"}),
    "llm": frozenset({"llm"}),
}
# Exception class names (anywhere in the MRO) that mean the run ran out of time.
_TIMEOUT_NAMES: Final = frozenset(
    {"TimeoutError", "GraphTimeout", "QueryCanceled", "Timeout", "TimeoutException", "ReadTimeout"}
)
_QUERY_CANCELED_SQLSTATE: Final = "57014"
_OUTCOME_SET: Final = frozenset(sc.OUTCOMES)


def is_timeout(exc: BaseException) -> bool:
    """True for asyncio's/LangGraph's/the driver's timeouts (SQLSTATE 57014, sqlite3's `interrupted`)."""
    if any(c.__name__ in _TIMEOUT_NAMES for c in type(exc).__mro__):
        return True
    if db_status_code(exc) == _QUERY_CANCELED_SQLSTATE:
        return True
    return type(exc).__module__ == "sqlite3" and str(exc) == "interrupted"


def db_status_code(exc: BaseException) -> str:
    """`db.response.status_code`: the SQLSTATE where the driver gives one (psycopg's `sqlstate`,
    psycopg2's `pgcode`), else the driver's error class."""
    for attribute in ("sqlstate", "pgcode"):
        code = getattr(exc, attribute, None)
        if isinstance(code, str) and code:
            return code
    return error_type_of(exc)


class RequestOutcome:
    """What one request's run did, as far as its outcome goes. Mutated from the run's own threads and
    tasks one event at a time (each update is a few attribute writes; no lock needed under the GIL for
    the list append/clear pairs used here)."""

    __slots__ = ("_failures", "_last_query", "corrections", "named", "question", "rows", "rows_query", "sqls")

    def __init__(self) -> None:
        # (kind, outcome, error.type, id of the exception or 0), oldest first
        self._failures: list[tuple[str, str, str, int]] = []
        self.corrections = 0
        self.named: str | None = None
        self.rows: int | None = None  # rows fetched from the last query that returned a result set
        self.rows_query = False
        self.question: str | None = None
        self.sqls: list[GeneratedSql] = []  # for the evaluators, at most MAX_SQL_PER_REQUEST
        self._last_query: GeneratedSql | None = None

    # --- what the run reports ------------------------------------------------------------------
    def failed(self, kind: Kind, outcome: str, error_type: str, exc: BaseException | None = None) -> None:
        self._failures.append((kind, outcome, error_type, id(exc) if exc is not None else 0))

    def succeeded(self, kind: Kind) -> None:
        if not self._failures:
            return
        recovers = _RECOVERS[kind]
        kept = [f for f in self._failures if f[0] not in recovers]
        self.corrections += len(self._failures) - len(kept)
        self._failures = kept

    def sql_failed(self, exc: BaseException) -> str:
        """A query raised; returns its `db.response.status_code`."""
        code = db_status_code(exc)
        self.failed("sql", sc.OUTCOME_TIMEOUT if is_timeout(exc) else sc.OUTCOME_SQL_ERROR, code, exc)
        return code

    def add_sql(self, sql: str, span: Span, *, executed: bool) -> None:
        """A SQL text the run generated (chat span) or executed (DB span), for the evaluators."""
        context = span.get_span_context()
        if len(self.sqls) >= MAX_SQL_PER_REQUEST or not context.is_valid:
            return
        item = GeneratedSql(sql, context.trace_id, context.span_id)
        self.sqls.append(item)
        if executed:
            self._last_query = item

    def query_ran(self, has_result_set: bool) -> None:
        """A query succeeded; one with a result set starts a new row count."""
        self.succeeded("sql")
        if has_result_set:
            self.rows_query = True
            self.rows = 0

    def add_rows(self, n: int) -> int:
        """The app fetched `n` rows of the last query; returns that query's rows so far."""
        self.rows = (self.rows or 0) + n
        if self._last_query is not None:
            self._last_query.rows = self.rows
        return self.rows

    def name(self, outcome: str) -> None:
        if outcome not in _OUTCOME_SET:
            raise ValueError(f"outcome {outcome!r} is not allowed; allowed: {', '.join(sc.OUTCOMES)}")
        self.named = outcome

    # --- the end -------------------------------------------------------------------------------
    def resolve(self, exc: BaseException | None, declared_error_type: str | None) -> tuple[str, str | None]:
        """(nl2sql.outcome, error.type or None) by the contract's precedence."""
        failure = self._failures[-1] if self._failures else None
        if self.named is not None:
            if self.named not in sc.ERROR_OUTCOMES:
                return self.named, None
            error_type = declared_error_type or (failure[2] if failure else None)
            if error_type is None and exc is not None:
                error_type = error_type_of(exc)
            return self.named, error_type or self.named
        if exc is not None:
            return self._of_exception(exc)
        if failure is not None:
            return failure[1], failure[2]
        if declared_error_type is not None:
            return sc.OUTCOME_ERROR, declared_error_type
        if self.rows_query and not self.rows:
            return sc.OUTCOME_EMPTY_RESULT, None
        return sc.OUTCOME_ANSWERED, None

    def _of_exception(self, exc: BaseException) -> tuple[str, str]:
        if is_timeout(exc):
            return sc.OUTCOME_TIMEOUT, error_type_of(exc)
        key = id(exc)
        cause = exc.__cause__ or exc.__context__
        for _kind, outcome, error_type, exc_id in reversed(self._failures):
            if exc_id and (exc_id == key or (cause is not None and exc_id == id(cause))):
                return outcome, error_type
        return sc.OUTCOME_ERROR, error_type_of(exc)


def question_of(inputs: object) -> str | None:
    """The question of a graph's input: a `question` key, else the last human message's text."""
    if isinstance(inputs, dict):
        question = inputs.get("question")
        if isinstance(question, str):
            return question
        messages = inputs.get("messages")
        if isinstance(messages, list):
            for message in reversed(messages):
                if getattr(message, "type", None) == "human" and isinstance(message.content, str):
                    return str(message.content)
    return None


def named_outcome(output: object, key: str) -> str | None:
    """The app's own outcome in a graph's final state (`key`), if it names one from the closed set."""
    value = output.get(key) if isinstance(output, dict) else getattr(output, key, None)
    return value if isinstance(value, str) and value in _OUTCOME_SET else None


def current_request() -> RequestOutcome | None:
    """The outcome of the request whose run this thread/task is in, if any."""
    step = current_step()
    if step is None:
        return None
    owner = getattr(step, "owner", step)
    request: RequestOutcome | None = getattr(owner, "request", None)
    return request


def set_outcome(outcome: str) -> None:
    """Name this request's `nl2sql.outcome` yourself (one of the closed set); it wins over the derived
    one. Call it inside the run (a node, or a `workflow()` block); outside one it does nothing.

    Raises ValueError for an outcome not in the set (a programming error, like `record_validation`)."""
    if outcome not in _OUTCOME_SET:
        raise ValueError(f"outcome {outcome!r} is not allowed; allowed: {', '.join(sc.OUTCOMES)}")
    request = current_request()
    if request is not None:
        request.named = outcome
