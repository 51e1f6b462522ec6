"""Shared test plumbing: real services over real connections, never mocks.

A service that cannot be reached skips its tests on a developer's machine and fails them in CI (CI=true).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

IN_CI = os.environ.get("CI", "").lower() == "true"

# No per-example deadline: it is a timed assertion, and the suite's processes share two cores with real services.
settings.register_profile("timecredits", deadline=None)
settings.load_profile("timecredits")


def service_missing(message: str) -> None:
    """Skip on a developer's machine; in CI (CI=true) a missing service is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def embedded_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The primary server's URL: DATABASE_URL, or an embedded PostgreSQL started for this test session."""
    from infra.embedded import EmbeddedPostgres
    from tests.postgres import server_answers

    configured = os.environ.get("DATABASE_URL")
    if configured:
        if not server_answers(configured):
            service_missing(f"DATABASE_URL={configured} does not answer")
        yield configured
        return
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")), durable=False)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"embedded PostgreSQL did not start: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def primary_template(embedded_postgres: str) -> Iterator[str]:
    from tests.postgres import migrated_template

    with migrated_template(embedded_postgres) as name:
        yield name


def _broker_answers(bootstrap_servers: str) -> bool:
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS, or an embedded Tansu broker started for this test session."""
    from infra.embedded import EmbeddedBroker

    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        if not _broker_answers(configured):
            service_missing(f"KAFKA_BOOTSTRAP_SERVERS={configured} does not answer")
        yield configured
        return
    broker = EmbeddedBroker(Path(tmp_path_factory.mktemp("broker")))
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"embedded broker did not start: {exc}")
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()
