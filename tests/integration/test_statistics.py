"""Participation statistics agree with the ledger, suppress small cells and respect consent."""
from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, text

from ledger.events import (
    BookingAttended,
    BookingCancelled,
    ConsentChanged,
    CreditsGifted,
    CreditsRedeemed,
    DecodedEvent,
    EntryReversed,
    EventPayload,
    HoursApproved,
    HoursLogged,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    decode_event,
    encode_event,
)
from tests.ledger_helpers import actor_for
from ledger.pg.processing import EventProcessor
from stats.facts import write_facts
from stats.queries import participation

AREAS = ["E09000030", "E09000012", "E09000025"]
START = date(2026, 1, 1)
END = date(2026, 12, 31)


def _ev(payload: EventPayload, at: datetime, event_id: uuid.UUID | None = None) -> DecodedEvent:
    decoded = decode_event(encode_event(payload, actor=actor_for(payload), event_id=event_id, occurred_at=at)[1])
    assert isinstance(decoded, DecodedEvent), decoded
    return decoded


def _registry(volunteers: list[tuple[str, str, str, bool]]) -> list[DecodedEvent]:
    at = datetime(2025, 12, 1, tzinfo=UTC)
    events = [
        _ev(OrganisationRegistered(org_id="club", name="Club", area=AREAS[0], kinds=frozenset({"community"})), at),
        _ev(OrganisationRegistered(org_id="lido", name="Lido", area=AREAS[0], kinds=frozenset({"partner"})), at),
        _ev(OpportunityListed(opportunity_id="swim", partner_id="lido", title="Swim", category="sport", cost=100,
                              area=AREAS[0]), at),
    ]
    for volunteer, area, age, consent in volunteers:
        events.append(_ev(VolunteerRegistered(volunteer_id=volunteer, area=area, age_band=age if consent else None,
                                              seb="lower" if consent else None, consent_stats=consent), at))
        events.append(_ev(MembershipStarted(membership_id=uuid.uuid4(), org_id="club", volunteer_id=volunteer), at))
    return events


def _random_stream(rng: random.Random, volunteers: list[str], count: int) -> list[DecodedEvent]:
    """Hours logged and approved, bookings attended or cancelled, redemptions, gifts, and reversals of each."""
    events: list[DecodedEvent] = []
    reversible: list[tuple[uuid.UUID, str]] = []
    for n in range(count):
        at = datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(hours=7 * n)
        volunteer = rng.choice(volunteers)
        roll = rng.random()
        if roll < 0.45:
            log = _ev(HoursLogged(volunteer_id=volunteer, org_id="club", date=at.date(),
                                  minutes=rng.choice([20, 45, 60, 90])), at)
            approval = _ev(HoursApproved(log_event_id=log.event_id, volunteer_id=volunteer, org_id="club"), at)
            events += [log, approval]
            reversible.append((approval.event_id, volunteer))
        elif roll < 0.6:
            booking = _ev(OpportunityBooked(volunteer_id=volunteer, opportunity_id="swim", partner_id="lido",
                                            amount=100), at)
            settle = (BookingAttended if rng.random() < 0.7 else BookingCancelled)(
                booking_event_id=booking.event_id, volunteer_id=volunteer)
            events.append(booking)
            if rng.random() < 0.8:
                events.append(_ev(settle, at + timedelta(hours=1)))
            else:
                reversible.append((booking.event_id, volunteer))
        elif roll < 0.75:
            spend = _ev(CreditsRedeemed(volunteer_id=volunteer, partner_id="lido", amount=rng.randint(10, 120)), at)
            events.append(spend)
            reversible.append((spend.event_id, volunteer))
        elif roll < 0.9:
            other = rng.choice([v for v in volunteers if v != volunteer])
            gift = _ev(CreditsGifted(from_volunteer_id=volunteer, to_volunteer_id=other, amount=rng.randint(5, 80)), at)
            events.append(gift)
            reversible.append((gift.event_id, volunteer))
        elif reversible:
            target, owner = reversible.pop(rng.randrange(len(reversible)))
            events.append(_ev(EntryReversed(target_event_id=target, volunteer_id=owner, reason="correction"), at))
    return events


def _apply(engine: Engine, events: list[DecodedEvent], batch: int = 37) -> None:
    processor = EventProcessor(engine)
    for start in range(0, len(events), batch):
        result = processor.process(events[start : start + batch])
        write_facts(engine, result.committed)
        write_facts(engine, result.committed[: len(result.committed) // 2])  # tc.ledger redelivers: no double count


def _ledger_totals(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        def one(sql: str) -> int:
            return int(conn.execute(text(sql)).scalar() or 0)

        unreversed = "NOT EXISTS (SELECT 1 FROM entries r WHERE r.related_entry_id = e.id AND r.kind = 'entry_reversed')"
        return {
            "credits_earned": -one("SELECT sum(balance) FROM balances WHERE kind = 'issuer'"),
            "credits_spent": one("SELECT sum(balance) FROM balances WHERE kind = 'partner'"),
            "credits_gifted": one("SELECT sum(p.amount) FROM entries e JOIN postings p ON p.entry_id = e.id "
                                  f"WHERE e.kind = 'credits_gifted' AND p.amount > 0 AND {unreversed}"),
            "minutes": one("SELECT sum(l.minutes) FROM hours_logs l JOIN hours_decisions d ON d.log_event_id = l.event_id "
                           f"JOIN entries e ON e.id = d.entry_id WHERE {unreversed}"),
            "bookings": one(f"SELECT count(*) FROM entries e WHERE kind = 'opportunity_booked' AND {unreversed}"),
            "attendances": one("SELECT count(*) FROM entries WHERE kind = 'booking_attended'"),
            "cancellations": one("SELECT count(*) FROM entries WHERE kind = 'booking_cancelled'"),
            "redemptions": one(f"SELECT count(*) FROM entries e WHERE kind = 'credits_redeemed' AND {unreversed}"),
        }


def test_statistics_equal_the_ledger_after_a_random_stream_with_reversals_and_gifts(engine: Engine) -> None:
    rng = random.Random(5)
    volunteers = [f"s{n}" for n in range(30)]
    _apply(engine, _registry([(v, rng.choice(AREAS), "25-34", rng.random() < 0.8) for v in volunteers]))
    _apply(engine, _random_stream(rng, volunteers, 600))
    with engine.connect() as conn:
        reversals = conn.execute(text("SELECT count(*) FROM entries WHERE kind = 'entry_reversed'")).scalar()
        gifts = conn.execute(text("SELECT count(*) FROM entries WHERE kind = 'credits_gifted'")).scalar()
        facts, entries = conn.execute(text("SELECT (SELECT count(*) FROM stats_facts), (SELECT count(*) FROM entries)")).one()
    assert reversals and gifts, "the stream exercised reversals and gifts"
    assert facts == entries

    expected = _ledger_totals(engine)
    totals = participation(engine, "month", START, END).totals
    assert {name: getattr(totals, name) for name in expected} == expected
    for group_by in ("month", "quarter", "org", "area", "age_band", "seb", "category"):
        rows = participation(engine, group_by, START, END).rows
        if group_by not in ("org", "category"):  # an entry belongs to exactly one such group
            for name in ("credits_earned", "credits_spent", "credits_gifted", "minutes"):
                assert sum(getattr(r.figures, name) for r in rows) == expected[name], (group_by, name)


def _hours_for(volunteers: list[str], day: date) -> list[DecodedEvent]:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    events = []
    for volunteer in volunteers:
        log = _ev(HoursLogged(volunteer_id=volunteer, org_id="club", date=day, minutes=60), at)
        events += [log, _ev(HoursApproved(log_event_id=log.event_id, volunteer_id=volunteer, org_id="club"), at)]
    return events


def test_a_cell_of_four_volunteers_shows_no_figures_and_five_do(engine: Engine) -> None:
    four = [f"a{n}" for n in range(4)]
    five = [f"b{n}" for n in range(5)]
    _apply(engine, _registry([(v, AREAS[0], "16-24", True) for v in four] + [(v, AREAS[1], "65+", True) for v in five]))
    _apply(engine, _hours_for(four + five, date(2026, 3, 10)))
    rows = {row.group: row.figures for row in participation(engine, "area", START, END).rows}
    assert rows[AREAS[0]].suppressed and rows[AREAS[0]].volunteers == 4
    assert not rows[AREAS[1]].suppressed and rows[AREAS[1]].active_volunteers == 5


def test_volunteers_who_did_not_consent_are_never_broken_down_by_demographics(engine: Engine) -> None:
    said_yes = [f"y{n}" for n in range(6)]
    said_no = [f"n{n}" for n in range(6)]
    _apply(engine, _registry([(v, AREAS[0], "16-24", True) for v in said_yes] +
                             [(v, AREAS[0], "65+", False) for v in said_no]))
    _apply(engine, _hours_for(said_yes + said_no, date(2026, 5, 2)))
    by_age = {row.group: row.figures for row in participation(engine, "age_band", START, END).rows}
    assert set(by_age) == {"16-24", "undisclosed"}, "no 65+ row: those volunteers said no"
    assert by_age["undisclosed"].active_volunteers == 6
    by_seb = {row.group for row in participation(engine, "seb", START, END).rows}
    assert by_seb == {"lower", "undisclosed"}
    assert participation(engine, "month", START, END).totals.active_volunteers == 12, "everyone counts in totals"


def test_a_withdrawal_of_consent_takes_effect_for_every_figure_computed_after_it(engine: Engine) -> None:
    volunteers = [f"w{n}" for n in range(12)]
    _apply(engine, _registry([(v, AREAS[0], "16-24", True) for v in volunteers]))
    _apply(engine, _hours_for(volunteers, date(2026, 5, 2)))
    before = {row.group: row.figures for row in participation(engine, "age_band", START, END).rows}
    assert set(before) == {"16-24"} and before["16-24"].active_volunteers == 12
    at = datetime(2026, 6, 1, tzinfo=UTC)
    _apply(engine, [_ev(ConsentChanged(volunteer_id=v, consent_stats=False), at) for v in volunteers[:6]])
    after = {row.group: row.figures for row in participation(engine, "age_band", START, END).rows}
    assert after["16-24"].active_volunteers == 6 and after["undisclosed"].active_volunteers == 6
    assert participation(engine, "month", START, END).totals.active_volunteers == 12, "they still count in totals"
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM volunteers WHERE id = ANY (:ids) AND "
                                 "(age_band IS NOT NULL OR seb IS NOT NULL OR consent_stats)"),
                            {"ids": volunteers[:6]}).scalar_one()
    assert kept == 0, "withdrawing deletes the answers about age and background"
    _apply(engine, [_ev(ConsentChanged(volunteer_id="w0", consent_stats=True, age_band="25-34"), at)])
    again = {row.group: row.figures for row in participation(engine, "age_band", START, END).rows}
    assert again["undisclosed"].volunteers == 5 and "25-34" in again
    # An older change met late (the API wrote a newer answer first) changes nothing.
    _apply(engine, [_ev(ConsentChanged(volunteer_id="w0", consent_stats=False), at - timedelta(days=1))])
    with engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT consent_stats, age_band FROM volunteers WHERE id = 'w0'")).one()) == (
            True, "25-34")


def test_a_figure_describing_fewer_than_five_volunteers_is_withheld_in_a_shown_cell(engine: Engine) -> None:
    volunteers = [f"g{n}" for n in range(8)]
    _apply(engine, _registry([(v, AREAS[0], "35-44", True) for v in volunteers]))
    _apply(engine, _hours_for(volunteers, date(2026, 4, 1)))
    at = datetime(2026, 4, 2, 12, tzinfo=UTC)
    _apply(engine, [_ev(CreditsGifted(from_volunteer_id=giver, to_volunteer_id="g7", amount=10), at)
                    for giver in volunteers[:2]])
    totals = participation(engine, "month", START, END).totals
    assert not totals.suppressed and totals.credits_gifted == 20
    assert totals.hidden("credits_gifted"), "two givers: the gifted credits describe two people"
    assert not totals.hidden("hours") and not totals.hidden("active_volunteers")
