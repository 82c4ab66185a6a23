"""The outcome against a real PostgreSQL server through psycopg (and its contrib instrumentation): the
SQLSTATE becomes `db.response.status_code` and `error.type`, a cancelled statement is a timeout, fetched
rows decide `empty_result`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from apps import pipeline
from nl2sql_observability.autoinstrument import Nl2sqlInstrumentor
from nl2sql_observability.autoinstrument.settings import InstrumentorSettings
from opentelemetry.trace import StatusCode
from postgres_server import postgres_server

psycopg = pytest.importorskip("psycopg")
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: E402

CONFIG = {"configurable": {"tenant_id": "acme"}}


@pytest.fixture(scope="module")
def conninfo() -> Iterator[str]:
    try:
        with postgres_server() as info:
            yield info
    except FileNotFoundError as exc:
        if os.environ.get("CI") == "true":
            raise  # in CI the server must run (scripts/ci-prerequisites.sh installs it)
        pytest.skip(str(exc))


@pytest.fixture
def zero_code(captured, audit_calls):
    inst = Nl2sqlInstrumentor()
    inst.instrument(settings=InstrumentorSettings())
    pg = PsycopgInstrumentor()
    pg.instrument(tracer_provider=captured.telemetry.tracer_provider)
    try:
        yield captured
    finally:
        pg.uninstrument()
        inst.uninstrument()


def _run(conninfo: str, sql: str, **options: str) -> None:
    extra = " ".join(f"-c {k}={v}" for k, v in options.items())
    conn = psycopg.connect(conninfo, autocommit=True, options=extra)
    try:
        model = pipeline.GenericFakeChatModel(messages=pipeline.replies(sql))
        pipeline.build_pipeline(conn, model).invoke({"question": "q"}, config=CONFIG)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql", "options", "outcome", "code"),
    [
        ("SELECT g FROM generate_series(1, 3) AS g", {}, "answered", None),
        ("SELECT 1 WHERE false", {}, "empty_result", None),
        ("SELECT nope FROM pg_class", {}, "sql_error", "42703"),  # undefined_column
        ("SELECT * FROM no_such_table", {}, "sql_error", "42P01"),  # undefined_table
        ("SELECT 1/0", {}, "sql_error", "22012"),  # division_by_zero
        ("SELECT pg_sleep(5)", {"statement_timeout": "100"}, "timeout", "57014"),  # query_canceled
    ],
)
def test_sqlstate_outcomes(zero_code, conninfo: str, sql: str, options: dict[str, str], outcome: str, code):
    _run(conninfo, sql, **options)
    spans = zero_code.spans()
    (workflow,) = [s for s in spans if s.name == "invoke_workflow nl2sql"]
    assert workflow.attributes["nl2sql.outcome"] == outcome
    assert workflow.attributes.get("error.type") == code
    assert (workflow.status.status_code == StatusCode.ERROR) is (code is not None)
    (db,) = [s for s in spans if s.attributes.get("db.system") == "postgresql" or s.name.startswith("SELECT")]
    assert db.attributes.get("db.response.status_code") == code
    (execute,) = [s for s in spans if s.name == "node execute"]
    if outcome == "answered":
        assert execute.attributes["db.response.returned_rows"] == 3
    if outcome == "empty_result":
        assert execute.attributes["db.response.returned_rows"] == 0
