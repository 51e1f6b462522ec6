"""Events through a real broker and a real `timecredits worker` process into PostgreSQL."""
from __future__ import annotations

import base64
import csv
import io
import json
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from rich.console import Console
from sqlalchemy import text

from ledger.actors import volunteer_actor
from ledger.events import (
    TOPIC_ACTIVITY,
    TOPIC_LEDGER,
    TOPIC_REJECTED,
    BookingAttended,
    CreditsGifted,
    CreditsRedeemed,
    EntryCommitted,
    HoursApproved,
    HoursLogged,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    encode_event,
)
from ledger.pg.processing import event_status
from ledger.pg.repository import LedgerRepository
from ledger.pg.verify import verify_ledger
from producers.cli import EXIT_OK, EXIT_REFUSED, import_hours_command
from tests.e2e.conftest import PARTITIONS, Stack
from tests.e2e.stack import decided_count, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.integration]

AREA = "E09000012"
ACTOR = "test"


def _registered(stack: Stack, volunteer_id: str) -> bool:
    with stack.engine.connect() as conn:
        return conn.execute(text("SELECT 1 FROM volunteers WHERE id = :v"), {"v": volunteer_id}).first() is not None


def _register(stack: Stack, tag: str, volunteers: int, *, auto_approve: bool = False) -> list[str]:
    """Organisations, volunteers and an opportunity through tc.admin; returns the volunteer ids."""
    ids = [f"{tag}-v{n}" for n in range(volunteers)]
    with stack.producer() as producer:
        producer.publish(OrganisationRegistered(org_id=f"{tag}-club", name="Club", area=AREA, kinds=frozenset({"community"}),
                                                 auto_approve=auto_approve), actor=ACTOR)
        producer.publish(OrganisationRegistered(org_id=f"{tag}-lido", name="Lido", area=AREA, kinds=frozenset({"partner"})), actor=ACTOR)
        producer.publish(OpportunityListed(opportunity_id=f"{tag}-swim", partner_id=f"{tag}-lido", title="Swim",
                                           category="sport", cost=100, area=AREA), actor=ACTOR)
        for volunteer in ids:
            producer.publish(VolunteerRegistered(volunteer_id=volunteer, area=AREA, consent_stats=True), actor=ACTOR)

    def registered() -> bool:
        with stack.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM volunteers WHERE id LIKE :t || '-%'"), {"t": tag}).scalar() == volunteers and \
                conn.execute(text("SELECT count(*) FROM opportunities WHERE id = :o"), {"o": f"{tag}-swim"}).scalar() == 1 and \
                conn.execute(text("SELECT count(*) FROM organisations WHERE id = :c"), {"c": f"{tag}-club"}).scalar() == 1

    wait_until(registered, 90, "the registry events to be applied")
    # Memberships once the club is in: keyed by the volunteer, one could otherwise overtake the club's event.
    with stack.producer() as producer:
        for volunteer in ids:
            producer.publish(MembershipStarted(membership_id=uuid.uuid4(), org_id=f"{tag}-club", volunteer_id=volunteer),
                             actor=ACTOR)

    def members() -> bool:
        with stack.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM memberships WHERE org_id = :c"), {"c": f"{tag}-club"}).scalar() == volunteers

    wait_until(members, 90, "the memberships to be applied")
    return ids


def _wait_decided(stack: Stack, event_ids: list[uuid.UUID], timeout: float = 90) -> None:
    wait_until(lambda: decided_count(stack.engine, event_ids) == len(event_ids), timeout,
               f"{len(event_ids)} events to be processed")


def _consume(stack: Stack, topic: str, minimum: int, timeout_s: float = 30) -> list[bytes]:
    consumer = KafkaConsumer(stack.topic(topic), bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000, group_id=None)
    values: list[bytes] = []
    try:
        wait_until(lambda: values.extend(m.value for m in consumer) or len(values) >= minimum, timeout_s,
                   f"{minimum} messages on {topic}", interval=0)
    finally:
        consumer.close()
    return values


def test_hours_booking_attendance_redemption_and_gift_end_to_end(shared_stack: Stack) -> None:
    stack = shared_stack
    ana, ben = _register(stack, "flow", 2)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=ana, org_id="flow-club", date=date(2026, 11, 1),
                                              minutes=300), actor=ACTOR)
        approved = producer.publish(HoursApproved(log_event_id=logged.event_id, volunteer_id=ana, org_id="flow-club"), actor=ACTOR)
        booked = producer.publish(OpportunityBooked(volunteer_id=ana, opportunity_id="flow-swim", partner_id="flow-lido", amount=100), actor=volunteer_actor(ana))
        attended = producer.publish(BookingAttended(booking_event_id=booked.event_id, volunteer_id=ana), actor=ACTOR)
        redeemed = producer.publish(CreditsRedeemed(volunteer_id=ana, partner_id="flow-lido", amount=50), actor=volunteer_actor(ana))
        gifted = producer.publish(CreditsGifted(from_volunteer_id=ana, to_volunteer_id=ben, amount=75), actor=volunteer_actor(ana))
    ids = [e.event_id for e in (logged, approved, booked, attended, redeemed, gifted)]
    _wait_decided(stack, ids)

    statuses = [event_status(stack.engine, i) for i in ids]
    assert all(s is not None and s.status == "applied" for s in statuses), statuses
    repository = LedgerRepository(stack.engine)
    assert repository.volunteer_balance(ana).available == 500 - 100 - 50 - 75
    assert repository.volunteer_balance(ben).available == 75
    assert repository.balance("partner:flow-lido") == 150

    published = [EntryCommitted.model_validate_json(v) for v in _consume(stack, TOPIC_LEDGER, 5)]
    assert {p.event_id for p in published} >= {approved.event_id, booked.event_id, attended.event_id,
                                                redeemed.event_id, gifted.event_id}
    assert verify_ledger(stack.engine).ok


def test_the_same_event_produced_three_times_makes_one_entry(shared_stack: Stack) -> None:
    stack = shared_stack
    [vera] = _register(stack, "dup", 1)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=vera, org_id="dup-club", date=date(2026, 11, 1),
                                              minutes=60), actor=ACTOR)
        approval = HoursApproved(log_event_id=logged.event_id, volunteer_id=vera, org_id="dup-club")
        first = producer.publish(approval, actor=ACTOR)
        for _ in range(2):
            producer.send_envelope(first)
    _wait_decided(stack, [logged.event_id, first.event_id])
    with stack.engine.connect() as conn:
        entries = conn.execute(text("SELECT count(*) FROM entries WHERE volunteer_id = :v"), {"v": vera}).scalar()
    assert entries == 1
    assert LedgerRepository(stack.engine).volunteer_balance(vera).available == 100


def test_poison_lands_in_the_dead_letter_topic_and_the_events_around_it_apply(shared_stack: Stack) -> None:
    stack = shared_stack
    [pia] = _register(stack, "poison", 1)
    bad_payload_id = uuid.uuid4()
    _, unknown_type = encode_event(CreditsRedeemed(volunteer_id=pia, partner_id="poison-lido", amount=1), actor=ACTOR)
    unknown_type = unknown_type.replace(b'"CreditsRedeemed"', b'"CreditsStolen"')
    invalid_payload = json.dumps({
        "event_id": str(bad_payload_id), "type": "HoursLogged", "version": 1, "occurred_at": "2026-11-02T10:00:00Z",
        "actor": ACTOR, "payload": {"volunteer_id": pia, "org_id": "poison-club", "date": "2026-11-01",
                                    "minutes": -30, "activity": "x"},
    }).encode()
    with stack.producer() as producer:
        before = producer.publish(HoursLogged(volunteer_id=pia, org_id="poison-club", date=date(2026, 11, 1),
                                              minutes=60), actor=ACTOR)
        for raw in (b"\x00\xffnot json at all", unknown_type, invalid_payload):
            producer.send_raw(stack.topic(TOPIC_ACTIVITY), pia.encode(), raw)
        after = producer.publish(HoursLogged(volunteer_id=pia, org_id="poison-club", date=date(2026, 11, 2),
                                             minutes=30), actor=ACTOR)
    _wait_decided(stack, [before.event_id, after.event_id, bad_payload_id])

    letters = [json.loads(v) for v in _consume(stack, TOPIC_REJECTED, 3)]
    mine = [letter for letter in letters if pia.encode() in base64.b64decode(letter["original"])
            or base64.b64decode(letter["original"]) == b"\x00\xffnot json at all"]
    assert sorted(letter["reason"] for letter in mine) == ["invalid_payload", "undecodable", "unknown_type"]
    assert all(letter["source"]["topic"] == stack.topic(TOPIC_ACTIVITY) and letter["rejected_at"] for letter in mine)
    assert event_status(stack.engine, bad_payload_id).reason == "invalid_payload"  # type: ignore[union-attr]
    assert event_status(stack.engine, before.event_id).status == "applied"  # type: ignore[union-attr]
    assert event_status(stack.engine, after.event_id).status == "applied"  # type: ignore[union-attr]


def test_a_spend_produced_after_the_approval_that_funds_it_is_applied_after_it(shared_stack: Stack) -> None:
    stack = shared_stack
    volunteers = _register(stack, "order", 40)
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE organisations SET auto_approve = true WHERE id = 'order-club'"))
    ids = []
    with stack.producer() as producer:
        for round_ in range(5):
            for volunteer in volunteers:
                logged = producer.publish(HoursLogged(volunteer_id=volunteer, org_id="order-club",
                                                      date=date(2026, 11, 1), minutes=60), actor=ACTOR)
                spent = producer.publish(CreditsRedeemed(volunteer_id=volunteer, partner_id="order-lido", amount=100),
                                         actor=volunteer_actor(volunteer))
                ids += [logged.event_id, spent.event_id]
    _wait_decided(stack, ids)
    with stack.engine.connect() as conn:
        refused = conn.execute(text("SELECT count(*) FROM rejections WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
                               {"ids": [str(i) for i in ids]}).scalar()
    assert refused == 0, "every spend found the credits of the approval produced before it"
    assert LedgerRepository(stack.engine).balance("partner:order-lido") == 100 * 5 * 40


def test_the_statistics_agent_records_a_fact_for_every_committed_entry(shared_stack: Stack) -> None:
    """The worker's agent on tc.ledger: facts follow the ledger, each entry once, whatever was redelivered."""
    stack = shared_stack
    [sam] = _register(stack, "stats", 1)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=sam, org_id="stats-club", date=date(2026, 11, 1),
                                              minutes=45), actor=ACTOR)
        approved = producer.publish(HoursApproved(log_event_id=logged.event_id, volunteer_id=sam, org_id="stats-club"),
                                    actor=ACTOR)
    _wait_decided(stack, [logged.event_id, approved.event_id])

    def facts_match_entries() -> bool:
        with stack.engine.connect() as conn:
            facts, entries, missing = conn.execute(text(
                "SELECT (SELECT count(*) FROM stats_facts), (SELECT count(*) FROM entries), "
                "(SELECT count(*) FROM entries e WHERE NOT EXISTS (SELECT 1 FROM stats_facts f WHERE f.entry_id = e.id))"
            )).one()
        return entries > 0 and facts == entries and missing == 0

    wait_until(facts_match_entries, 60, "a statistics fact for every entry")
    with stack.engine.connect() as conn:
        minutes = conn.execute(text("SELECT minutes FROM stats_facts WHERE volunteer_id = :v"), {"v": sam}).scalar()
    assert minutes == 45


def test_the_statistics_run_in_a_process_of_their_own_with_only(stack: Stack) -> None:
    """`worker --only ledger` applies events and publishes tc.ledger but records no statistics; a second process,
    `worker --only statistics`, records a fact for every entry."""
    stack.start_worker(only="ledger")
    [ada] = _register(stack, "apart", 1)
    with stack.producer() as producer:
        logged = producer.publish(HoursLogged(volunteer_id=ada, org_id="apart-club", date=date(2026, 11, 1),
                                              minutes=90), actor=ACTOR)
        approved = producer.publish(HoursApproved(log_event_id=logged.event_id, volunteer_id=ada,
                                                  org_id="apart-club"), actor=ACTOR)
    _wait_decided(stack, [logged.event_id, approved.event_id])
    published = [EntryCommitted.model_validate_json(v) for v in _consume(stack, TOPIC_LEDGER, 1)]
    assert [entry.kind for entry in published] == ["hours_approved"]

    def facts() -> int:
        with stack.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM stats_facts")).scalar_one())

    # A worker running both consumers records the fact within about a second of publishing the entry (its
    # statistics consumer waits at most 500 ms at the broker); give it three before saying none came.
    time.sleep(3)
    assert facts() == 0, "the ledger-only worker recorded statistics"
    stack.start_worker(only="statistics")
    wait_until(lambda: facts() == 1, 60, "the statistics process to record the entry")
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT minutes FROM stats_facts")).scalar_one() == 90


# --- `timecredits import-hours`: checked before producing, told after the worker ------------------------------


def _sheet(path: Path, rows: list[str]) -> Path:
    path.write_text("Volunteer,Date,Hours,Activity\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _import(stack: Stack, sheet: Path, org: str, **options: Any) -> tuple[int, str]:
    buffer = io.StringIO()
    code = import_hours_command(sheet, org, options.pop("approve", False), options.pop("report", None),
                                stack.bootstrap, PARTITIONS, topic_prefix=stack.prefix, database_url=stack.database_url,
                                console=Console(file=buffer, width=300), wait_timeout_s=90, **options)
    return code, buffer.getvalue()


def _report(path: Path) -> list[tuple[str, str]]:
    return [(row["line"], row["reason"]) for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))]


def _logs(stack: Stack, org: str) -> int:
    with stack.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM hours_logs WHERE org_id = :o"), {"o": org}).scalar_one())


def test_import_hours_refuses_unknown_and_non_members_before_producing_and_says_what_the_worker_did(
        shared_stack: Stack, tmp_path: Path) -> None:
    stack = shared_stack
    ana, ben = _register(stack, "imp", 2)
    with stack.producer() as producer:  # registered, but a member of no organisation
        producer.publish(VolunteerRegistered(volunteer_id="imp-loner", area=AREA, consent_stats=True), actor=ACTOR)
    wait_until(lambda: _registered(stack, "imp-loner"), 60, "the lone volunteer")
    day = f"{date.today() - timedelta(days=3):%d/%m/%Y}"
    sheet = _sheet(tmp_path / "hours.csv", [
        f"{ana},{day},1.5,Food bank",
        f"{ben},{day},1,Litter pick",
        f"imp-nobody,{day},2,Food bank",
        f"imp-loner,{day},2,Food bank",
        f"{ana},{day},1.5,Food bank",
        f"{ben},31/09/2026,1,Litter pick",
    ])
    code, out = _import(stack, sheet, "imp-club")
    assert code == EXIT_REFUSED, out
    assert "Produced 2 event(s) for 2 row(s) of hours.csv" in out
    assert "Applied: 2 log(s), 2.5 hours, 0.00 credits approved, 2.50 credits waiting for approval." in out, out
    assert "Rejected 4 row(s)" in out and str(tmp_path / "hours.report.csv") in out.replace("\n", "")
    report = tmp_path / "hours.report.csv"
    assert _report(report) == [("4", "unknown_volunteer"), ("5", "not_a_member"), ("6", "possible_duplicate"),
                               ("7", "bad_date")]
    assert "is not a member of imp-club" in report.read_text(encoding="utf-8-sig")
    assert _logs(stack, "imp-club") == 2  # the refused rows were never produced

    again, out = _import(stack, sheet, "imp-club")
    assert again == EXIT_REFUSED, out
    assert "Already imported: 2 row(s) of hours.csv" in out and "Produced" not in out, out
    assert _report(report) == [("4", "unknown_volunteer"), ("5", "not_a_member"), ("6", "possible_duplicate"),
                               ("7", "bad_date")]

    # The same sheet as an Excel workbook: the same report, at the same default path (FILE.report.csv).
    from openpyxl import Workbook

    csv_report = report.read_text(encoding="utf-8-sig")
    report.unlink()
    workbook = Workbook()
    for line in sheet.read_text(encoding="utf-8").splitlines():
        workbook.active.append(line.split(","))
    workbook.save(tmp_path / "hours.xlsx")
    as_xlsx, out = _import(stack, tmp_path / "hours.xlsx", "imp-club")
    assert as_xlsx == EXIT_REFUSED, out
    assert "Already imported: 2 row(s) of hours.xlsx" in out, out
    assert report.read_text(encoding="utf-8-sig") == csv_report

    kept, out = _import(stack, sheet, "imp-club", keep_duplicates=True, report=tmp_path / "kept.csv")
    assert kept == EXIT_REFUSED, out
    assert "Produced 1 event(s) for 1 row(s)" in out and "Applied: 1 log(s), 1.5 hours" in out, out
    assert ("6", "possible_duplicate") not in _report(tmp_path / "kept.csv")
    assert _logs(stack, "imp-club") == 3


def test_import_hours_skips_approvals_an_organisation_makes_itself_and_groups_the_workers_refusals(
        shared_stack: Stack, tmp_path: Path) -> None:
    stack = shared_stack
    ids = _register(stack, "auto", 1, auto_approve=True)
    day = f"{date.today() - timedelta(days=2):%d/%m/%Y}"
    clean = _sheet(tmp_path / "clean.csv", [f"{ids[0]},{day},2,Gardening"])
    code, out = _import(stack, clean, "auto-club", approve=True)
    assert code == EXIT_OK, out
    assert "No approvals produced: auto-club approves its volunteers' hours by itself" in out, out
    assert "Produced 1 event(s) for 1 row(s)" in out
    assert "Applied: 1 log(s), 2 hours, 2.00 credits approved, 0.00 credits waiting for approval." in out, out
    assert "Every row of the sheet is in the ledger." in out

    # 13 hours twice on one day pass the check one by one; the worker refuses the second past 24 approved hours.
    long_day = _sheet(tmp_path / "long.csv", [f"{ids[0]},{day},11,Harvest", f"{ids[0]},{day},13,Harvest night"])
    code, out = _import(stack, long_day, "auto-club", approve=True)
    assert code == EXIT_REFUSED, out
    assert "Refused by the ledger: 1 row(s) (more than 24 hours approved for the volunteer on one day)" in out, out
    assert "Applied: 1 log(s), 11 hours, 11.00 credits approved" in out, out
    assert LedgerRepository(stack.engine).volunteer_balance(ids[0]).available == 1300
