"""The embedded PostgreSQL and Tansu broker really start, serve, and stop (infra/embedded.py)."""
from __future__ import annotations

import socket
import uuid
from pathlib import Path

import psutil
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from sqlalchemy import create_engine, text

from infra.embedded import EmbeddedBroker, EmbeddedPostgres
from infra.services import ServiceEndpoints, running_services
from timecredits.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def _gone(pid: int) -> bool:
    """Exited; an unreaped zombie (re-parented to pid 1) counts as exited."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _listens_on_loopback(pid: int, port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1" and c.laddr.port == port
        for c in psutil.Process(pid).net_connections(kind="inet")
    )


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _select_one(url: str) -> tuple[int, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT 1, current_database()")).one()
            return row[0], row[1]
    finally:
        engine.dispose()


def test_both_services_serve_and_stop(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path, durable=False)
    broker = EmbeddedBroker(tmp_path)
    pg.start()
    try:
        broker.start()
        pg_pid, pg_port = pg.pid, pg.port
        broker_pid, broker_port = broker.pid, broker.port
        assert pg_pid is not None and broker_pid is not None

        assert pg.url == f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/timecredits"
        assert _select_one(pg.url) == (1, "timecredits")
        assert _listens_on_loopback(pg_pid, pg_port)

        assert broker.bootstrap_servers == f"127.0.0.1:{broker_port}"
        assert _listens_on_loopback(broker_pid, broker_port)

        topic = f"embedded-test-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=10_000)
        try:
            admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
            assert topic in admin.list_topics()
        finally:
            admin.close()

        payload = uuid.uuid4().bytes
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        try:
            metadata = producer.send(topic, key=b"volunteer-1", value=payload).get(timeout=15)
            assert metadata.topic == topic and metadata.partition in (0, 1)
        finally:
            producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            consumer_timeout_ms=15_000,
        )
        try:
            assert consumer.partitions_for_topic(topic) == {0, 1}
            message = next(consumer, None)  # None after consumer_timeout_ms without a message
        finally:
            consumer.close()
        assert message is not None, "the produced message was not consumed back"
        assert (message.topic, message.partition, message.offset) == (
            topic, metadata.partition, metadata.offset)
        assert (message.key, message.value) == (b"volunteer-1", payload)
    finally:
        broker.stop()
        pg.stop()

    assert _gone(broker_pid) and _gone(pg_pid)
    assert not _accepts(broker_port) and not _accepts(pg_port)
    assert pg.pid is None and broker.pid is None


def test_stop_twice_and_stop_unstarted_are_harmless(tmp_path: Path) -> None:
    EmbeddedPostgres(tmp_path / "never").stop()
    EmbeddedBroker(tmp_path / "never").stop()

    with EmbeddedPostgres(tmp_path, durable=False) as pg, EmbeddedBroker(tmp_path) as broker:
        pg_pid, broker_pid = pg.pid, broker.pid
        assert pg_pid is not None and broker_pid is not None
        pg.stop()
        broker.stop()
        pg.stop()
        broker.stop()
    # __exit__ stopped both a third time
    assert _gone(pg_pid) and _gone(broker_pid)


def test_durable_restart_keeps_data_and_replaces_leftover_server(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path)
    first.start()
    leftover_pid = first.pid
    assert leftover_pid is not None
    engine = create_engine(first.url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE kept (v int)"))
        conn.execute(text("INSERT INTO kept VALUES (42)"))
    engine.dispose()

    # A second process (as after a crash of the first) starts on the same data dir.
    with EmbeddedPostgres(tmp_path) as second:
        assert _gone(leftover_pid)
        assert second.pid != leftover_pid
        engine = create_engine(second.url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT v FROM kept")).scalar_one() == 42
        engine.dispose()
    first.stop()  # the server it started is already gone: harmless


def test_long_data_dir_uses_short_socket_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedPostgres(data_dir, durable=False) as pg:
        socket_dir = pg._tmp_socket_dir
        assert socket_dir is not None and len(str(socket_dir)) < 40
        assert _select_one(pg.url) == (1, "timecredits")
    assert not socket_dir.exists()


def test_running_services_starts_only_what_is_missing(tmp_path: Path) -> None:
    configured = Settings(DATABASE_URL="postgresql+psycopg2://u@db.example:5432/tc",
                          KAFKA_BOOTSTRAP_SERVERS="kafka.example:9092")
    with running_services(configured, tmp_path / "configured") as endpoints:
        assert endpoints == ServiceEndpoints("postgresql+psycopg2://u@db.example:5432/tc",
                                             "kafka.example:9092")
    assert not (tmp_path / "configured").exists()

    unset = Settings(DATABASE_URL=None, KAFKA_BOOTSTRAP_SERVERS=None)
    with running_services(unset, tmp_path, durable=False, need_broker=False) as endpoints:
        assert endpoints.kafka_bootstrap_servers is None
        assert endpoints.database_url is not None
        assert _select_one(endpoints.database_url) == (1, "timecredits")
        pg_pid = int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0])
    assert _gone(pg_pid)
    assert not (tmp_path / "broker.log").exists()

    with pytest.raises(RuntimeError, match="boom"):
        with running_services(unset, tmp_path, durable=False) as endpoints:
            assert endpoints.database_url is not None and endpoints.kafka_bootstrap_servers is not None
            pg_pid = int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0])
            broker_port = int(endpoints.kafka_bootstrap_servers.rsplit(":", 1)[1])
            assert _accepts(broker_port)
            raise RuntimeError("boom")
    assert _gone(pg_pid)
    assert not _accepts(broker_port)


def test_a_second_process_attaches_to_a_running_server_and_leaves_it_running(tmp_path: Path) -> None:
    """`timecredits verify --data-dir D` beside a running `timecredits up --data-dir D` must not stop its database."""
    import subprocess
    import sys

    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom infra.embedded import EmbeddedPostgres\n"
         f"s = EmbeddedPostgres(Path({str(tmp_path)!r}), durable=False)\ns.start()\n"
         "print(s.port, s.pid, flush=True)\ntime.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port, pid = (int(x) for x in owner.stdout.readline().split())  # type: ignore[union-attr]
        guest = EmbeddedPostgres(tmp_path, durable=False)
        guest.start()
        assert (guest.port, guest.pid) == (port, pid)
        guest.stop()
        assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        owner.kill()
        owner.wait(timeout=10)
        cleaner = EmbeddedPostgres(tmp_path, durable=False)  # the owner is gone: its leftover server is stopped
        cleaner.start()
        cleaner.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
