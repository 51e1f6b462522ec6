"""Configured or embedded: resolve where PostgreSQL and the broker are (docs/design.md §6)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra.embedded import EmbeddedBroker, EmbeddedPostgres, running_broker
from timecredits.settings import Settings

__all__ = ["ServiceEndpoints", "running_services"]


@dataclass(frozen=True)
class ServiceEndpoints:
    """Where the services are. A field is None only when that service was not needed and not configured."""

    database_url: str | None
    kafka_bootstrap_servers: str | None
    #: The embedded services started for the occasion, by name, with a check that their process still runs.
    embedded: dict[str, Callable[[], bool]] = field(default_factory=dict, compare=False)


@contextmanager
def running_services(
    settings: Settings,
    data_dir: Path,
    *,
    durable: bool = True,
    need_database: bool = True,
    need_broker: bool = True,
    reserved_ports: frozenset[int] = frozenset(),
) -> Iterator[ServiceEndpoints]:
    """Yield the endpoints, starting an embedded service for each needed one that is not configured.

    A configured URL (``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``) is used as-is and nothing is
    started for it; so is a service another live process (`timecredits up`) runs on the same data dir.
    Embedded services live under ``data_dir`` and are stopped on exit, in reverse order of start, also when the
    body raises. An embedded service never takes one of ``reserved_ports``
    (the API's, bound only after the services are up).
    """
    database_url = settings.database_url or None
    bootstrap_servers = settings.kafka_bootstrap_servers or None
    embedded: dict[str, Callable[[], bool]] = {}
    with ExitStack() as stack:
        if database_url is None and need_database:
            postgres = stack.enter_context(EmbeddedPostgres(data_dir, durable=durable, avoid_ports=reserved_ports))
            database_url = postgres.url
            embedded["PostgreSQL"] = lambda: postgres.alive
        if bootstrap_servers is None and need_broker:
            bootstrap_servers = running_broker(data_dir)
        if bootstrap_servers is None and need_broker:
            broker = stack.enter_context(EmbeddedBroker(data_dir, avoid_ports=reserved_ports))
            bootstrap_servers = broker.bootstrap_servers
            embedded["broker"] = lambda: broker.alive
        yield ServiceEndpoints(database_url=database_url, kafka_bootstrap_servers=bootstrap_servers, embedded=embedded)
