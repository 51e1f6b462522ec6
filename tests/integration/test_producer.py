"""The producer and the spreadsheet import against a real Kafka-protocol broker (never a mock).

The broker is `KAFKA_BOOTSTRAP_SERVERS` when set, else an embedded Tansu started for the session.
"""
from __future__ import annotations

import csv
import io
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from rich.console import Console

from infra.embedded import EmbeddedBroker
from ledger.events import (
    TOPIC_ACTIVITY,
    TOPIC_ADMIN,
    CreditsGifted,
    DecodedEvent,
    HoursApproved,
    HoursLogged,
    Undecodable,
    VolunteerRegistered,
    decode_event,
    new_event,
)
from producers.cli import EXIT_BAD_FILE, EXIT_BROKER, EXIT_REFUSED, import_hours_command
from producers.hours_csv import read_sheet
from producers.import_hours import import_hours
from producers.kafka import ALL_TOPICS, DeliveryError, EventProducer, ensure_topics
from tests.conftest import service_missing

pytestmark = [pytest.mark.integration, pytest.mark.broker]

PARTITIONS = 4
SAMPLE = Path(__file__).resolve().parents[2] / "producers" / "samples" / "hours-2026-10.csv"


@pytest.fixture(scope="session")
def topics(kafka_bootstrap: str) -> str:
    ensure_topics(kafka_bootstrap, PARTITIONS)
    return kafka_bootstrap


@pytest.fixture()
def producer(topics: str) -> Iterator[EventProducer]:
    with EventProducer(topics) as producer:
        yield producer


# --- helpers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Tail:
    """Reads what arrives on some topics from about the moment it is created; other tests share the broker.

    About: Tansu 0.6.0 answers ListOffsets(latest) with the base offset of the last batch plus one, not the
    offset after its last record, so a few older records can show up. `read` therefore keeps only the records
    `match` accepts, and each test tags its keys or organisation ids.
    """

    def __init__(self, bootstrap_servers: str, *topics: str) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(self._consumer.partitions_for_topic(topic))
        ]
        self._consumer.assign(partitions)
        for tp, offset in self._consumer.end_offsets(partitions).items():
            self._consumer.seek(tp, offset)

    def read(self, count: int, match: Callable[[Consumed], bool], timeout: float = 20.0) -> list[Consumed]:
        records: list[Consumed] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in self._consumer.poll(timeout_ms=500).values():
                consumed = (Consumed(r.topic, r.partition, r.offset, r.key, r.value) for r in batch)
                records += [record for record in consumed if match(record)]
        assert len(records) >= count, f"only {len(records)} of {count} records arrived"
        return records

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture()
def tail(topics: str) -> Iterator[Tail]:
    tail = Tail(topics, TOPIC_ACTIVITY, TOPIC_ADMIN)
    yield tail
    tail.close()


@pytest.fixture()
def tag() -> str:
    """Unique per test: part of the keys or organisation ids it produces."""
    return uuid.uuid4().hex[:8]


def keyed(tag: str) -> Callable[[Consumed], bool]:
    return lambda record: record.key is not None and tag.encode() in record.key


def of_org(org_id: str) -> Callable[[Consumed], bool]:
    def match(record: Consumed) -> bool:
        event = decode_event(record.value)
        return isinstance(event, DecodedEvent) and getattr(event.payload, "org_id", None) == org_id

    return match


def _decoded(record: Consumed) -> DecodedEvent:
    event = decode_event(record.value)
    assert isinstance(event, DecodedEvent), event
    return event


def _partition_counts(bootstrap_servers: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names) if t["error_code"] == 0}
    finally:
        admin.close()


def _existing_topics(bootstrap_servers: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def _hours(volunteer: str, minutes: int = 60) -> HoursLogged:
    return HoursLogged(volunteer_id=volunteer, org_id="org-test", date=date(2026, 1, 5), minutes=minutes)


# --- topics ---------------------------------------------------------------------------------


def test_ensure_topics_creates_the_four_topics(kafka_bootstrap: str) -> None:
    absent = [name for name in ALL_TOPICS if name not in _existing_topics(kafka_bootstrap)]
    ensure_topics(kafka_bootstrap, PARTITIONS)
    counts = _partition_counts(kafka_bootstrap, list(ALL_TOPICS))
    assert set(counts) == set(ALL_TOPICS)
    assert all(counts[name] == PARTITIONS for name in absent)  # pre-existing topics keep their count
    ensure_topics(kafka_bootstrap, PARTITIONS)  # idempotent
    assert _partition_counts(kafka_bootstrap, list(ALL_TOPICS)) == counts


def test_ensure_topics_uses_the_requested_partition_count(kafka_bootstrap: str) -> None:
    names = [f"test-{uuid.uuid4().hex[:8]}.{suffix}" for suffix in ("a", "b")]
    ensure_topics(kafka_bootstrap, 3, names)
    assert _partition_counts(kafka_bootstrap, names) == {names[0]: 3, names[1]: 3}
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert consumer.partitions_for_topic(names[0]) == {0, 1, 2}
    finally:
        consumer.close()
    ensure_topics(kafka_bootstrap, 5, names)  # exists already: left as it is, no error
    assert _partition_counts(kafka_bootstrap, names) == {names[0]: 3, names[1]: 3}


def test_ensure_topics_refuses_zero_partitions(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError):
        ensure_topics(kafka_bootstrap, 0, ["never-created"])


# --- producing ------------------------------------------------------------------------------


def test_published_events_come_back_keyed_and_decodable(producer: EventProducer, tail: Tail, tag: str) -> None:
    sent = [
        producer.publish(_hours(f"{tag}-1"), actor="org:org-test"),
        producer.publish(
            CreditsGifted(from_volunteer_id=f"{tag}-2", to_volunteer_id=f"{tag}-1", amount=150),
            actor=f"volunteer:{tag}-2",
        ),
        producer.publish(
            VolunteerRegistered(volunteer_id=f"{tag}-3", area="E09000030", consent_stats=True), actor="admin"
        ),
    ]
    producer.flush()
    records = {_decoded(r).event_id: r for r in tail.read(len(sent), keyed(tag))}
    for envelope in sent:
        record = records[envelope.event_id]
        event = _decoded(record)
        assert event.envelope == envelope
        assert record.topic == event.topic
        assert record.key == event.partition_key.encode("utf-8")
    assert records[sent[1].event_id].key == f"{tag}-2".encode()  # a gift is keyed by its sender
    assert records[sent[2].event_id].topic == TOPIC_ADMIN


def test_events_of_one_volunteer_stay_in_one_partition_in_order(
    producer: EventProducer, tail: Tail, tag: str
) -> None:
    volunteers = [f"{tag}-{i}" for i in range(9)]
    sent: dict[str, list[UUID]] = defaultdict(list)
    for n in range(450):
        volunteer = volunteers[n % len(volunteers)] if n % 5 else volunteers[0]
        envelope = producer.publish(_hours(volunteer, minutes=1 + n % 600), actor="org:org-test")
        sent[volunteer].append(envelope.event_id)
    producer.flush()
    records = tail.read(450, keyed(tag))
    received: dict[str, list[tuple[int, int, UUID]]] = defaultdict(list)
    for record in records:
        assert record.key is not None
        received[record.key.decode()].append((record.partition, record.offset, _decoded(record).event_id))
    assert set(received) == set(volunteers)
    for volunteer, items in received.items():
        assert len({partition for partition, _, _ in items}) == 1, f"{volunteer} spread over partitions"
        assert [event_id for _, _, event_id in sorted(items)] == sent[volunteer]
    assert len({items[0][0] for items in received.values()}) > 1  # keys do spread over partitions


def test_publish_and_wait_returns_once_acknowledged(producer: EventProducer, tail: Tail, tag: str) -> None:
    event_id = uuid.uuid4()
    occurred_at = datetime(2026, 1, 6, 9, 30, tzinfo=UTC)
    envelope = producer.publish_and_wait(_hours(tag), actor="org:org-test", event_id=event_id,
                                         occurred_at=occurred_at, timeout=10)
    assert (envelope.event_id, envelope.occurred_at) == (event_id, occurred_at)
    (record,) = tail.read(1, keyed(tag))
    assert _decoded(record).envelope == envelope


def test_send_envelope_and_raw_bytes(producer: EventProducer, tail: Tail, tag: str) -> None:
    envelope = new_event(_hours(f"{tag}-env"), actor="org:org-test")
    producer.send_envelope(envelope).get(timeout=10)
    poison = b"\xff\xfe not json " + tag.encode()
    producer.send_raw(TOPIC_ACTIVITY, f"{tag}-poison".encode(), poison).get(timeout=10)
    producer.send_raw(TOPIC_ACTIVITY, None, f'{{"{tag}": 1}}'.encode()).get(timeout=10)
    producer.flush()
    records = tail.read(3, lambda r: tag.encode() in r.value)
    by_key = {r.key: r for r in records}
    assert _decoded(by_key[f"{tag}-env".encode()]).envelope == envelope
    assert by_key[f"{tag}-poison".encode()].value == poison
    assert isinstance(decode_event(poison), Undecodable)
    assert by_key[None].value == f'{{"{tag}": 1}}'.encode()


def test_invalid_events_are_refused_before_sending(producer: EventProducer) -> None:
    future_log = HoursLogged(volunteer_id="v", org_id="o", date=date(2099, 1, 1), minutes=1)
    with pytest.raises(ValueError, match="future"):
        producer.publish(future_log, actor="org:o")
    bad = new_event(_hours("v"), actor="a").model_copy(update={"type": "NoSuchEvent"})
    with pytest.raises(ValueError, match="NoSuchEvent"):
        producer.send_envelope(bad)


def test_unknown_topics_are_not_created_by_the_producer(topics: str) -> None:
    name = f"not-created-{uuid.uuid4().hex[:8]}"
    with EventProducer(topics, max_block_ms=1500) as producer:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=name):
            producer.send_raw(name, None, b"x")
        assert time.monotonic() - started < 10
    assert name not in _existing_topics(topics)


def test_delivery_errors_surface_when_the_broker_is_gone(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path)
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"embedded broker did not start: {exc}")
    try:
        ensure_topics(broker.bootstrap_servers, 2)
        producer = EventProducer(
            broker.bootstrap_servers, request_timeout_ms=1000, delivery_timeout_ms=2000, max_block_ms=2000
        )
        try:
            producer.publish_and_wait(_hours("dead-1"), actor="org:org-test", timeout=10)
            producer.publish(_hours("dead-1"), actor="org:org-test")
            producer.flush(timeout=10)
            broker.stop()

            started = time.monotonic()
            event_id = uuid.uuid4()
            with pytest.raises(DeliveryError) as waited:
                producer.publish_and_wait(_hours("dead-1"), actor="org:org-test", event_id=event_id, timeout=5)
            assert waited.value.event_id == event_id and str(event_id) in str(waited.value)
            assert isinstance(waited.value, RuntimeError)
            assert time.monotonic() - started < 8

            started = time.monotonic()
            pending = [producer.publish(_hours(f"dead-{n}"), actor="org:org-test").event_id for n in range(3)]
            with pytest.raises(DeliveryError) as flushed:
                producer.flush(timeout=10)
            assert set(flushed.value.event_ids) == set(pending)
            assert "3 event(s) were not delivered" in str(flushed.value)
            assert time.monotonic() - started < 10
            producer.flush(timeout=1)  # each failure is reported once
            producer.publish(_hours("dead-4"), actor="org:org-test")  # still pending when closing
        finally:
            started = time.monotonic()
            producer.close(timeout=1)  # gives up on the pending record instead of hanging or raising
            assert time.monotonic() - started < 8
    finally:
        broker.stop()


def test_a_sequence_error_does_not_wedge_the_producer(topics: str, tail: Tail, tag: str) -> None:
    """Tansu refuses kafka-python's epoch bump after a sequence error; the producer then replaces its client."""
    with EventProducer(topics, request_timeout_ms=2000, delivery_timeout_ms=4000) as producer:
        first = producer.publish_and_wait(_hours(tag), actor="org:org-test")
        (record,) = tail.read(1, keyed(tag))
        client = producer._client
        client._transaction_manager.set_sequence_number(TopicPartition(TOPIC_ACTIVITY, record.partition), 7)
        lost = uuid.uuid4()
        with pytest.raises(DeliveryError) as caught:
            producer.publish_and_wait(_hours(tag), actor="org:org-test", event_id=lost, timeout=10)
        assert caught.value.event_id == lost
        retried = producer.publish_and_wait(_hours(tag), actor="org:org-test", event_id=lost, timeout=10)
    ids = [_decoded(r).event_id for r in tail.read(1, keyed(tag))]
    assert ids == [retried.event_id] and first.event_id != lost


def test_a_producer_for_an_unreachable_broker_fails_quickly(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path)
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"embedded broker did not start: {exc}")
    address = broker.bootstrap_servers
    broker.stop()
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="no Kafka broker answered"):
        EventProducer(address, bootstrap_timeout_ms=1500)
    assert time.monotonic() - started < 8


def test_from_settings_needs_an_address(monkeypatch: pytest.MonkeyPatch, topics: str) -> None:
    from timecredits.settings import get_settings

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
            EventProducer.from_settings()
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", topics)
        get_settings.cache_clear()
        with EventProducer.from_settings() as producer:
            producer.publish_and_wait(_hours("settings-1"), actor="org:org-test")
    finally:
        get_settings.cache_clear()


# --- the spreadsheet import -----------------------------------------------------------------

SHEET = "\r\n".join([
    "\ufeffVolunteer number,Date,Hours,Activity,Notes",
    "imp-1,01/10/2025,1.5,Food bank shift,",
    "imp-2,2 Oct 2025,1:30,Litter pick,",
    ",,,,",
    "imp-1,03/10/25,2h,Community garden,",
    "imp-3,31/09/2025,1,Library,bad date",
    "imp-4,04/10/2025,1,5,Library,unquoted decimal comma",
    "imp-2,05.10.2025,0.75,\"Befriending, weekly\",",
    "imp-2,05.10.2025,0.75,\"Befriending, weekly\",same session twice",
    "Total,,8.5,,",
]) + "\r\n"


def _write_sheet(tmp_path: Path, text: str = SHEET, name: str = "hours.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_csv_import_end_to_end(producer: EventProducer, tail: Tail, tmp_path: Path, tag: str) -> None:
    org = f"org-{tag}"
    path = _write_sheet(tmp_path)
    report = tmp_path / "reports" / "hours.report.csv"
    summary = import_hours(path, org, producer, approve=True, report_path=report, actor=f"org:{org}",
                           progress=False)
    assert (summary.rows, summary.events, summary.rejected, summary.skipped) == (5, 10, 2, 1)

    expected = read_sheet(path, org)
    records = tail.read(summary.events, of_org(org))
    events = [_decoded(r) for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    assert len(events) == 10
    logged = {e.event_id: e.payload for e in events if isinstance(e.payload, HoursLogged)}
    # The rows' descriptions stay off the topic (docs/design.md §5.16): the events are the rows without them.
    assert logged == {row.event_id: row.hours.model_copy(update={"activity": ""}) for row in expected.rows}
    assert all(row.hours.activity for row in expected.rows)
    assert not any(b'"activity"' in r.value for r in records)
    assert set(summary.log_event_ids) == set(logged)
    approvals = [e for e in events if isinstance(e.payload, HoursApproved)]
    assert {e.payload.log_event_id for e in approvals} == set(logged)
    assert all(e.envelope.actor == f"org:{org}" for e in events)
    by_volunteer: dict[str, list[DecodedEvent]] = defaultdict(list)
    for event in events:
        by_volunteer[event.partition_key].append(event)
    for volunteer_events in by_volunteer.values():  # each approval right after its log, in the same partition
        for log, approval in zip(volunteer_events[::2], volunteer_events[1::2], strict=True):
            assert isinstance(log.payload, HoursLogged) and isinstance(approval.payload, HoursApproved)
            assert approval.payload.log_event_id == log.event_id

    rows = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8-sig"))))
    assert [(r["line"], r["reason"]) for r in rows] == [("6", "bad_date"), ("7", "invalid_row"), ("10", "totals_row")]
    assert rows[0]["raw"] == "imp-3,31/09/2025,1,Library,bad date"
    assert "September 2025 has no day 31" in rows[0]["message"]


def test_importing_the_same_file_twice_gives_the_same_event_ids(
    producer: EventProducer, tail: Tail, tmp_path: Path, tag: str
) -> None:
    org = f"org-{tag}"
    path = _write_sheet(tmp_path)
    first = import_hours(path, org, producer, approve=False, report_path=tmp_path / "r1.csv", actor=f"org:{org}",
                         progress=False)
    second = import_hours(path, org, producer, approve=False, report_path=tmp_path / "r2.csv", actor=f"org:{org}",
                          progress=False)
    records = tail.read(first.events + second.events, of_org(org))
    ids = [_decoded(r).event_id for r in records]
    assert first.log_event_ids == second.log_event_ids
    assert sorted(ids) == sorted(first.log_event_ids * 2)
    assert (tmp_path / "r1.csv").read_bytes() == (tmp_path / "r2.csv").read_bytes()


def test_import_hours_command_with_the_sample_sheet(topics: str, tail: Tail, tmp_path: Path, tag: str) -> None:
    sample = tmp_path / SAMPLE.name
    sample.write_bytes(SAMPLE.read_bytes())
    buffer = io.StringIO()
    code = import_hours_command(sample, f"org-{tag}", True, None, topics, PARTITIONS,
                                console=Console(file=buffer, width=200))
    output = buffer.getvalue()
    assert code == EXIT_REFUSED, output  # the sample's one bad row
    assert "Produced 16 event(s) for 8 row(s)" in output
    assert "Rejected 1 row(s)" in output and "hours-2026-10.report.csv" in output
    assert "Skipped 1 totals row(s)" in output
    assert len(tail.read(16, of_org(f"org-{tag}"))) == 16
    report = (tmp_path / "hours-2026-10.report.csv").read_text(encoding="utf-8-sig")
    assert "10,bad_date" in report and "12,totals_row" in report


def test_import_hours_command_exit_codes(topics: str, tmp_path: Path) -> None:
    quiet = Console(file=io.StringIO())
    assert import_hours_command(tmp_path / "missing.csv", "org-x", False, None, topics, PARTITIONS,
                                console=quiet) == EXIT_BAD_FILE
    no_hours = _write_sheet(tmp_path, "volunteer,date,activity\r\nv,01/10/2025,x\r\n", "bad.csv")
    assert import_hours_command(no_hours, "org-x", False, None, topics, PARTITIONS, console=quiet) == EXIT_BAD_FILE
    sheet = _write_sheet(tmp_path)
    assert import_hours_command(sheet, "bad:org", False, None, topics, PARTITIONS, console=quiet) == EXIT_BAD_FILE


def test_import_hours_command_reports_an_unreachable_broker(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "gone")
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"embedded broker did not start: {exc}")
    address = broker.bootstrap_servers
    broker.stop()
    buffer = io.StringIO()
    code = import_hours_command(_write_sheet(tmp_path), "org-x", False, None, address, PARTITIONS,
                                console=Console(file=buffer, width=200))
    assert code == EXIT_BROKER
    assert "again is safe" in buffer.getvalue()


def test_import_hours_command_names_volunteers_by_the_organisations_own_reference(
        topics: str, tail: Tail, tmp_path: Path, tag: str, database_url: str) -> None:
    from sqlalchemy import create_engine, insert

    from ledger.pg import schema

    org, volunteer, other = f"org-{tag}", "v-00000000a11c", "v-00000000b0b0"
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(schema.organisations).values(id=org, name="Org", area="E09000030",
                                                             kinds=["community"], auto_approve=False))
            conn.execute(insert(schema.volunteers).values([{"id": v, "area": "E09000030", "consent_stats": True}
                                                           for v in (volunteer, other)]))
            conn.execute(insert(schema.volunteer_references).values(org_id=org, reference="FB-0042",
                                                                    volunteer_id=volunteer))
            conn.execute(insert(schema.memberships).values([
                {"id": uuid.uuid4(), "org_id": org, "volunteer_id": v, "started_at": datetime.now(UTC)}
                for v in (volunteer, other)]))
    finally:
        engine.dispose()
    day = f"{date.today() - timedelta(days=3):%d/%m/%Y}"
    sheet = _write_sheet(tmp_path, f"Volunteer,Date,Hours,Activity\r\nFB-0042,{day},1.5,Food bank\r\n"
                                   f"{other},{day},1,Food bank\r\nFB-0999,{day},1,Food bank\r\n")
    buffer = io.StringIO()
    code = import_hours_command(sheet, org, False, None, topics, PARTITIONS, console=Console(file=buffer, width=200),
                                database_url=database_url, wait_timeout_s=None)  # no worker here: produced only
    assert code == EXIT_REFUSED, buffer.getvalue()
    produced = sorted(_decoded(r).payload.volunteer_id for r in tail.read(2, of_org(org)))  # type: ignore[attr-defined]
    assert produced == sorted([volunteer, other])
    report = (tmp_path / "hours.report.csv").read_text(encoding="utf-8-sig")
    assert "4,unknown_volunteer,\"no volunteer has the reference 'FB-0999'" in report


def test_another_command_finds_the_broker_running_on_its_data_dir(tmp_path: Path) -> None:
    """What `import-hours` does beside a running `up`: the broker's state file names where it listens, while the
    process that started it lives; once stopped, nothing is found (a command then asks for an address)."""
    import subprocess
    import sys

    from infra.embedded import broker_state_file, running_broker

    find = [sys.executable, "-c", "import sys; from infra.embedded import running_broker; "
                                  "print(running_broker(sys.argv[1]))", str(tmp_path)]
    broker = EmbeddedBroker(tmp_path)
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"embedded broker did not start: {exc}")
    try:
        found = subprocess.run(find, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        assert found == broker.bootstrap_servers
        assert running_broker(tmp_path) is None  # its own broker is not "another one running"
    finally:
        broker.stop()
    assert not broker_state_file(tmp_path).exists()
    assert subprocess.run(find, capture_output=True, text=True, timeout=60, check=True).stdout.strip() == "None"
