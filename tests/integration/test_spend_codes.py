"""Spend codes and the earning limits on real PostgreSQL (docs/design.md §5.6): the worker's rules over what
the store holds, single use enforced by the database itself, and each rule tried with raw SQL."""
from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger.events import (
    CreditsRedeemed,
    DecodedEvent,
    HoursApproved,
    HoursLogged,
    MembershipStarted,
    OrganisationRegistered,
    VolunteerRegistered,
)
from ledger.pg.processing import EventOutcome, EventProcessor
from ledger.pg.registry import StoredRegistry
from ledger.pg.repository import LedgerRepository
from ledger.pg.spend_codes import create_code, find_code
from ledger.pg.verify import verify_ledger
from tests.ledger_helpers import as_event

WHEN = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
AREA = "E09000030"
DAY = date(2026, 11, 1)


def ev(payload, actor: str | None = None, at: datetime = WHEN) -> DecodedEvent:  # type: ignore[no-untyped-def]
    return as_event(payload, None, at, actor=actor)


@pytest.fixture()
def processor(engine: Engine) -> EventProcessor:
    processor = EventProcessor(engine)
    registry = [
        ev(OrganisationRegistered(org_id="garden", name="Garden", area=AREA, kinds=frozenset({"community"}),
                                  auto_approve=True)),
        ev(OrganisationRegistered(org_id="food", name="Food", area=AREA, kinds=frozenset({"community"}))),
        ev(OrganisationRegistered(org_id="lido", name="Lido", area=AREA, kinds=frozenset({"partner"}))),
        ev(VolunteerRegistered(volunteer_id="ana", area=AREA, consent_stats=True)),
        *[ev(MembershipStarted(membership_id=uuid4(), org_id=org, volunteer_id="ana")) for org in ("garden", "food")],
    ]
    assert all(o.applied for o in processor.process(registry).outcomes)
    earned = processor.process([ev(HoursLogged(volunteer_id="ana", org_id="garden", date=DAY, minutes=300), actor="org:garden")])
    assert earned.outcomes[0].applied
    return processor


def _code(engine: Engine, max_amount: int = 200, valid_for: timedelta = timedelta(minutes=10),
          now: datetime = WHEN) -> tuple[UUID, str]:
    with engine.begin() as conn:
        code, digits = create_code(conn, "ana", "lido", max_amount, valid_for, now)
    return code.id, digits


def _redeem(code_id: UUID | None, amount: int = 100, at: datetime = WHEN) -> DecodedEvent:
    return ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=amount, spend_code_id=code_id),
              actor="org:lido", at=at)


def test_a_partner_takes_credits_only_with_a_code_and_each_code_once(processor: EventProcessor,
                                                                     engine: Engine) -> None:
    code_id, digits = _code(engine)
    outcomes = processor.process([_redeem(None), _redeem(code_id), _redeem(code_id)]).outcomes
    assert [o.reason for o in outcomes] == ["authorisation_required", None, "code_used"]
    again = processor.process([_redeem(code_id, 10)]).outcomes
    assert again[0].reason == "code_used"
    assert LedgerRepository(engine).volunteer_balance("ana").available == 400
    with engine.connect() as conn:
        found = find_code(conn, "lido", digits)
        assert found is not None and found.used
        assert conn.execute(text("SELECT count(*) FROM spend_code_uses")).scalar_one() == 1
        assert find_code(conn, "garden", digits) is None  # the digits name a code of one partner only
    assert verify_ledger(engine).ok


def test_an_expired_code_or_a_larger_amount_is_refused(processor: EventProcessor, engine: Engine) -> None:
    code_id, _ = _code(engine, max_amount=150)
    late = WHEN + timedelta(minutes=11)
    outcomes = processor.process([_redeem(code_id, 151), _redeem(code_id, at=late)]).outcomes
    assert [o.reason for o in outcomes] == ["code_amount_exceeded", "code_expired"]
    assert processor.process([_redeem(code_id, 150)]).outcomes[0].applied


def test_two_writers_racing_with_one_code_make_one_payment(processor: EventProcessor, engine: Engine) -> None:
    """Each writer decides on what was committed when it loaded its batch, so both may find the code unused:
    the primary key of spend_code_uses has the last word."""
    code_id, _ = _code(engine)
    events = [_redeem(code_id), _redeem(code_id)]
    barrier = threading.Barrier(2)
    outcomes: list[EventOutcome] = []

    def pay(event: DecodedEvent, chain: str) -> None:
        barrier.wait()
        outcomes.extend(EventProcessor(engine).process([event], [chain]).outcomes)

    threads = [threading.Thread(target=pay, args=(event, f"tc.activity/{n}")) for n, event in enumerate(events)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(o.reason or "applied" for o in outcomes) == ["applied", "code_used"]
    assert LedgerRepository(engine).volunteer_balance("ana").available == 400
    assert verify_ledger(engine).ok


def test_the_database_refuses_a_second_use_and_any_change_to_a_use(processor: EventProcessor,
                                                                  engine: Engine) -> None:
    code_id, _ = _code(engine)
    assert processor.process([_redeem(code_id)]).outcomes[0].applied
    with pytest.raises(IntegrityError, match="spend_code_uses_pkey"), engine.begin() as conn:
        conn.execute(text("INSERT INTO spend_code_uses (code_id, event_id, used_at) VALUES (:c, :e, now())"),
                     {"c": code_id, "e": uuid4()})
    for statement in ("UPDATE spend_code_uses SET used_at = now()", "DELETE FROM spend_code_uses",
                      "TRUNCATE spend_code_uses CASCADE"):
        with pytest.raises(DBAPIError, match="append_only"), engine.begin() as conn:
            conn.execute(text(statement))
    with pytest.raises(IntegrityError, match="spend_code_amount_positive"), engine.begin() as conn:
        conn.execute(text("INSERT INTO spend_codes VALUES (gen_random_uuid(), 'ana', 'lido', 0, '\\x00', now(), "
                          "now() + interval '1 minute')"))


def test_24_hours_a_day_across_organisations_counted_from_the_store(processor: EventProcessor,
                                                                   engine: Engine) -> None:
    logged = ev(HoursLogged(volunteer_id="ana", org_id="food", date=DAY, minutes=1140),
                actor="org:food")
    assert processor.process([logged]).outcomes[0].applied  # pending: 5 h approved so far
    approve = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food"), actor="org:food")
    more = ev(HoursLogged(volunteer_id="ana", org_id="garden", date=DAY, minutes=1),
              actor="org:garden")
    other_day = ev(HoursLogged(volunteer_id="ana", org_id="garden", date=DAY - timedelta(days=1), minutes=60), actor="org:garden")
    outcomes = processor.process([approve, more, other_day]).outcomes
    assert [o.reason for o in outcomes] == [None, "too_many_hours", None]
    with engine.connect() as conn:
        assert StoredRegistry(conn).approved_minutes("ana", DAY) == 1440
        decided = conn.execute(text("SELECT decided_by FROM hours_decisions WHERE log_event_id = :l"),
                               {"l": logged.event_id}).scalar_one()
    assert decided == "org:food"


def test_every_new_decision_must_say_who_decided(processor: EventProcessor, engine: Engine) -> None:
    logged = ev(HoursLogged(volunteer_id="ana", org_id="food", date=DAY, minutes=60),
                actor="org:food")
    assert processor.process([logged]).outcomes[0].applied
    with pytest.raises(IntegrityError, match="hours_decisions_decided_by_required"), engine.begin() as conn:
        conn.execute(text("INSERT INTO hours_decisions (log_event_id, decision_event_id, decision, reason, "
                          "decided_at) VALUES (:l, gen_random_uuid(), 'rejected', '', now())"),
                     {"l": logged.event_id})
