"""Integration fixtures: every test gets its own database on each real PostgreSQL server.

Servers: the primary one (DATABASE_URL when set, else an embedded PostgreSQL from the pip package), and
the machine's system PostgreSQL (TIMECREDITS_TEST_SYSTEM_DATABASE_URL, by default 127.0.0.1:5432/test),
run as a second, separate server. Test databases are created from a migrated template and dropped after.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from tests.conftest import service_missing
from tests.postgres import fresh_database, migrated_template, server_answers

SYSTEM_SERVER_URL = os.environ.get(
    "TIMECREDITS_TEST_SYSTEM_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session", params=["primary", "system"])
def pg_server(request: pytest.FixtureRequest) -> str:
    if request.param == "primary":
        return request.getfixturevalue("embedded_postgres")
    if not server_answers(SYSTEM_SERVER_URL):
        service_missing(f"system PostgreSQL at {SYSTEM_SERVER_URL} does not answer")
    return SYSTEM_SERVER_URL


@pytest.fixture(scope="session")
def pg_template(pg_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    if pg_server == request.getfixturevalue("embedded_postgres"):
        yield request.getfixturevalue("primary_template")
        return
    with migrated_template(pg_server) as name:
        yield name


@pytest.fixture()
def database_url(pg_server: str, pg_template: str) -> Iterator[str]:
    with fresh_database(pg_server, pg_template) as url:
        yield url


@pytest.fixture()
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()
