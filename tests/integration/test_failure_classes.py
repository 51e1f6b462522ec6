"""The failure rule (consumers/failures.py) on errors a real PostgreSQL raises, through psycopg2 and SQLAlchemy."""
from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from consumers.failures import Verdict, classify
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def server(embedded_postgres: str) -> Iterator[Engine]:
    engine = create_engine(embedded_postgres)
    yield engine
    engine.dispose()


def _raised(engine: Engine, *statements: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    return caught.value


@pytest.mark.parametrize(("statements", "verdict", "reason"), [
    (["SELECT 1 / 0"], Verdict.ISOLATE, "data_error"),
    (["SELECT 'nine'::int"], Verdict.ISOLATE, "data_error"),
    (["SELECT 2147483647::int + 1"], Verdict.ISOLATE, "data_error"),
    (["CREATE TEMP TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (1)"], Verdict.ISOLATE,
     "integrity_error"),
    (["CREATE TEMP TABLE t (n int CHECK (n > 0))", "INSERT INTO t VALUES (0)"], Verdict.ISOLATE, "integrity_error"),
    (["SET TRANSACTION READ ONLY", "CREATE TABLE never_made (id int)"], Verdict.WAIT_AND_REPORT, "read_only"),
    (["SET statement_timeout = 50", "SELECT pg_sleep(2)"], Verdict.STOP, "statement_timeout"),
    (["SELECT * FROM no_such_table"], Verdict.STOP, "database_error"),
    (["DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'XX000'; END $$"], Verdict.STOP, "database_error"),
])
def test_errors_of_a_real_server(server: Engine, statements: list[str], verdict: Verdict, reason: str) -> None:
    error = _raised(server, *statements)
    assert isinstance(error.orig, psycopg2.Error) and error.orig.pgcode  # from the server, with its SQLSTATE
    for exc in (error, error.orig):
        assert (classify(exc).verdict, classify(exc).reason) == (verdict, reason)


def test_a_connection_the_server_ended_is_retried(server: Engine) -> None:
    with server.connect() as victim, server.connect() as admin:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar()
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as caught:
            victim.execute(text("SELECT 1"))
    assert classify(caught.value).verdict is Verdict.RETRY
    assert classify(caught.value).reason == "database_unavailable"


def test_a_server_that_is_not_there_is_retried() -> None:
    engine = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/none",
                           connect_args={"connect_timeout": 2})
    try:
        with pytest.raises(DBAPIError) as caught, engine.connect():
            pass
    finally:
        engine.dispose()
    assert classify(caught.value).verdict is Verdict.RETRY
    assert classify(caught.value.orig).verdict is Verdict.RETRY  # type: ignore[arg-type]
