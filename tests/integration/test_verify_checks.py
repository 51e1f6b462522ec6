"""`timecredits verify` checks the ledger's rules besides its hashes (docs/design.md §3.3, "What verify proves"):
each check is broken here with raw SQL, as only a superuser with the append-only triggers switched off could, and
verify names the check and the entry. Forged entries carry correct hashes, links and balances, so that the hash
chain alone passes and only the check under test can see them."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    GiftCredits,
    MarkNoShow,
    Posting,
    RedeemCredits,
    ReverseEntry,
)
from ledger.hashing import entry_hash
from ledger.pg.processing import load_committed
from ledger.pg.verify import HASH_CHAIN, verify_ledger
from ledger.pg.verify_checks import check_statistics
from stats.facts import write_facts
from tests.ledger_helpers import NOW, LedgerDriver, insert_raw_link, new_id


@dataclass(frozen=True)
class Ledger:
    """Event ids of the entries `_fill` wrote, by what they are."""

    earned: uuid.UUID
    attended: uuid.UUID
    booking_attended: uuid.UUID
    booking_open: uuid.UUID
    gift: uuid.UUID
    gift_reversal: uuid.UUID
    redeemed: uuid.UUID


def _fill(engine: Engine) -> Ledger:
    """Every kind of entry, each with its statistics fact, as the statistics worker writes them."""
    ids = {name: new_id() for name in Ledger.__dataclass_fields__}
    booking_cancelled, booking_missed = new_id(), new_id()
    LedgerDriver(engine, chain="a").apply([
        EarnCredits(ids["earned"], NOW, "v1", "org1", 150),
        EarnCredits(new_id(), NOW, "v2", "org1", 1000),
        BookOpportunity(ids["booking_attended"], NOW, "v2", "p1", 200),
        BookOpportunity(booking_cancelled, NOW, "v2", "p1", 200),
        BookOpportunity(booking_missed, NOW, "v2", "p1", 200),
        BookOpportunity(ids["booking_open"], NOW, "v2", "p1", 200),
        AttendBooking(ids["attended"], NOW, ids["booking_attended"]),
        CancelBooking(new_id(), NOW, booking_cancelled),
        MarkNoShow(new_id(), NOW, booking_missed, forfeit=True),
        GiftCredits(ids["gift"], NOW, "v2", "v3", 100),
        ReverseEntry(ids["gift_reversal"], NOW, ids["gift"]),
        RedeemCredits(ids["redeemed"], NOW, "v1", "p1", 50),
    ])
    with engine.connect() as conn:
        entry_ids = conn.execute(text("SELECT id FROM entries ORDER BY id")).scalars().all()
        committed = load_committed(conn, entry_ids)
    assert len(committed) == 12, committed
    write_facts(engine, committed)
    return Ledger(**ids)


def _tamper(engine: Engine, statement: str, **params: Any) -> None:
    """What only a superuser with the triggers switched off could do."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(statement), params)


def _not_yet_counted(engine: Engine, entry_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM stats_facts WHERE entry_id = :id"), {"id": entry_id})


def _entry(conn: Connection, event_id: uuid.UUID) -> Any:
    return conn.execute(text("SELECT id, event_id, volunteer_id, org_id, opportunity_id FROM entries "
                             "WHERE event_id = :e"), {"e": event_id}).one()


def _forge(engine: Engine, kind: str, postings: list[Posting], related: uuid.UUID, *,
           allow_twice: bool = False) -> int:
    """An entry written by hand with every hash and link right and the balances moved, as the worker would have
    written it, but breaking a rule; it relates to the entry of event `related`, with that entry's ids. With
    `allow_twice`, the unique constraint that lets an entry be related to once is dropped first."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        if allow_twice:
            conn.execute(text("ALTER TABLE entries DROP CONSTRAINT entries_related_once"))
        target = _entry(conn, related)
        event_id, recorded_at = new_id(), datetime.now(UTC)
        digest = entry_hash(prev_hash=None, event_id=event_id, kind=kind, occurred_at=NOW, recorded_at=recorded_at,
                            volunteer_id=target.volunteer_id, org_id=target.org_id,
                            opportunity_id=target.opportunity_id, related_event_id=related, postings=postings)
        entry_id = conn.execute(text("SELECT nextval('entries_id_seq')")).scalar_one()
        link_id = conn.execute(text("SELECT nextval('chain_links_id_seq')")).scalar_one()
        conn.execute(text(
            "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, volunteer_id, org_id, opportunity_id, "
            "related_entry_id, hash, link_id) VALUES (:id, :e, :kind, :o, :r, :v, :org, :op, :rel, :h, :link)"),
            {"id": entry_id, "e": event_id, "kind": kind, "o": NOW, "r": recorded_at, "v": target.volunteer_id,
             "org": target.org_id, "op": target.opportunity_id, "rel": target.id, "h": digest, "link": link_id})
        for posting in postings:
            conn.execute(text("INSERT INTO postings (entry_id, account_key, amount) VALUES (:e, :a, :m)"),
                         {"e": entry_id, "a": posting.account, "m": posting.amount})
            conn.execute(text("UPDATE balances SET balance = balance + :m WHERE account_key = :a"),
                         {"a": posting.account, "m": posting.amount})
        insert_raw_link(conn, link_id, "forged", [digest])
    with engine.connect() as conn:
        write_facts(engine, load_committed(conn, [entry_id]))
    return entry_id


def _failures(engine: Engine) -> dict[str, str]:
    report = verify_ledger(engine)
    failed = {name: "" for name, ok in report.results().items() if not ok}
    failed.update({check.name: check.problem or "" for check in report.checks if check.problem})
    if report.problem:
        failed[HASH_CHAIN] = report.problem
    return failed


def test_an_honest_ledger_passes_every_check(engine: Engine, database_url: str) -> None:
    _fill(engine)
    report = verify_ledger(engine)
    assert report.ok, (report.problem, report.checks)
    checked = {check.name: check.checked for check in report.checks}
    assert checked == {"hours_rate": 2, "reversals": 1, "bookings": 3, "statistics": 12}
    assert all(check.note is None for check in report.checks)
    result = subprocess.run([sys.executable, "-m", "timecredits.cli", "verify"], capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hours_rate: 2 approvals of hours checked" in result.stdout
    assert "every check holds" in result.stdout


def test_hours_that_earn_other_than_their_minutes_at_the_rate_are_named(engine: Engine, database_url: str) -> None:
    ledger = _fill(engine)
    _tamper(engine, "UPDATE hours_logs SET minutes = 60 WHERE event_id = "
                    "(SELECT log_event_id FROM hours_decisions d JOIN entries e ON e.id = d.entry_id "
                    "WHERE e.event_id = :e)", e=ledger.earned)
    with engine.connect() as conn:
        earned = _entry(conn, ledger.earned).id
    failures = _failures(engine)
    assert set(failures) == {"hours_rate"}, failures
    assert failures["hours_rate"].startswith(f"entry {earned} (event {ledger.earned}): approves 60 minutes logged")
    assert failures["hours_rate"].endswith("which earn 1.00 credits, but gives 1.50 credits")

    result = subprocess.run([sys.executable, "-m", "timecredits.cli", "verify"], capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "300"}, timeout=120)
    assert result.returncode == 1
    assert f"MISMATCH hours_rate: entry {earned} (event {ledger.earned})" in result.stdout


def test_hours_credited_to_another_volunteer_than_the_log_are_named(engine: Engine) -> None:
    ledger = _fill(engine)
    _tamper(engine, "UPDATE hours_logs SET volunteer_id = 'v2' WHERE event_id = "
                    "(SELECT log_event_id FROM hours_decisions d JOIN entries e ON e.id = d.entry_id "
                    "WHERE e.event_id = :e)", e=ledger.earned)
    failures = _failures(engine)
    assert set(failures) == {"hours_rate"}, failures
    assert "for volunteer v2 with org1, but credits volunteer v1 from org1" in failures["hours_rate"]


def test_a_reversal_that_does_not_mirror_its_entry_is_named(engine: Engine) -> None:
    ledger = _fill(engine)
    forged = _forge(engine, "entry_reversed", [Posting("volunteer:v1", 150), Posting("issuer:org1", -150)],
                    ledger.redeemed)
    failures = _failures(engine)
    assert set(failures) == {"reversals"}, failures
    assert failures["reversals"].startswith(f"reversal entry {forged} (event ")
    assert "account issuer:org1 moved 0.00 credits and the reversal moves it -1.50 credits, not 0.00 credits" in failures["reversals"]


def test_a_reversal_of_what_cannot_be_reversed_is_named(engine: Engine) -> None:
    ledger = _fill(engine)
    _forge(engine, "entry_reversed", [Posting("partner:p1", -200), Posting("holds:v2", 200)], ledger.attended)
    failures = _failures(engine)
    assert "reversals" in failures, failures
    assert "a booking_attended, which cannot be reversed" in failures["reversals"]


def test_an_entry_reversed_twice_is_named(engine: Engine) -> None:
    ledger = _fill(engine)
    _forge(engine, "entry_reversed", [Posting("volunteer:v1", 50), Posting("partner:p1", -50)], ledger.redeemed)
    assert _failures(engine) == {}
    _forge(engine, "entry_reversed", [Posting("volunteer:v1", 50), Posting("partner:p1", -50)], ledger.redeemed,
           allow_twice=True)
    failures = _failures(engine)
    assert set(failures) == {"reversals"}, failures
    with engine.connect() as conn:
        redeemed = _entry(conn, ledger.redeemed).id
    assert failures["reversals"].startswith(f"entry {redeemed} (event {ledger.redeemed}), a credits_redeemed, "
                                            "is reversed 2 times, by entries ")


def test_a_booking_settled_twice_is_named(engine: Engine) -> None:
    ledger = _fill(engine)
    _forge(engine, "booking_attended", [Posting("holds:v2", -200), Posting("partner:p1", 200)],
           ledger.booking_attended, allow_twice=True)
    failures = _failures(engine)
    assert set(failures) == {"bookings"}, failures
    with engine.connect() as conn:
        booking = _entry(conn, ledger.booking_attended).id
    assert failures["bookings"].startswith(f"booking entry {booking} (event {ledger.booking_attended}) is settled "
                                           "2 times, by entries ")


@pytest.mark.parametrize(("postings", "named"), [
    ([Posting("holds:v2", -100), Posting("volunteer:v2", 100)], "releases 1.00 credits in 2 postings"),
    ([Posting("holds:v2", -200), Posting("partner:p1", 200)], "2.00 credits to the partner"),
], ids=["half-the-hold", "cancelled-to-the-partner"])
def test_a_settlement_that_does_not_release_its_hold_to_the_volunteer_is_named(
        engine: Engine, postings: list[Posting], named: str) -> None:
    ledger = _fill(engine)
    forged = _forge(engine, "booking_cancelled", postings, ledger.booking_open)
    failures = _failures(engine)
    assert set(failures) == {"bookings"}, failures
    assert failures["bookings"].startswith(f"settlement entry {forged} (event ")
    assert "holds 2.00 credits, which should go back from the hold to the volunteer" in failures["bookings"]
    assert named in failures["bookings"]


def test_a_settlement_of_what_is_not_a_booking_is_named(engine: Engine) -> None:
    ledger = _fill(engine)
    _forge(engine, "booking_cancelled", [Posting("partner:p1", -50), Posting("volunteer:v1", 50)], ledger.redeemed)
    failures = _failures(engine)
    assert set(failures) == {"bookings"}, failures
    assert "a credits_redeemed, not a booking" in failures["bookings"]


@pytest.mark.parametrize(("statement", "named"), [
    ("UPDATE stats_facts SET amount = amount * 2 WHERE entry_id = (SELECT id FROM entries WHERE event_id = :e)",
     "its statistics fact says amount 2.00 credits where the ledger says 1.00 credits"),
    ("UPDATE stats_facts SET sign = 1, volunteer_id = 'v9' WHERE entry_id = "
     "(SELECT id FROM entries WHERE event_id = :r)",
     "its statistics fact says sign 1 where the ledger says -1; volunteer v9 where the ledger says v2"),
    ("UPDATE stats_facts SET kind = 'hours_approved' WHERE entry_id = (SELECT id FROM entries WHERE event_id = :e)",
     "its statistics fact says kind hours_approved where the ledger says credits_gifted"),
    ("INSERT INTO stats_facts (entry_id, kind, occurred_on, volunteer_id, amount, minutes, sign) "
     "VALUES (999999, 'hours_approved', '2026-11-02', 'v1', 100, 60, 1)",
     "statistics fact of entry 999999 (hours_approved, 1.00 credits, volunteer v1): the ledger has no such entry"),
], ids=["amount", "sign-and-volunteer", "kind", "no-entry"])
def test_statistics_facts_that_differ_from_the_ledger_are_named(engine: Engine, statement: str, named: str) -> None:
    ledger = _fill(engine)
    _tamper(engine, statement, e=ledger.gift, r=ledger.gift_reversal)
    failures = _failures(engine)
    assert set(failures) == {"statistics"}, failures
    assert failures["statistics"].endswith(named), failures["statistics"]


def test_entries_the_statistics_have_not_counted_yet_are_reported_not_failed(engine: Engine) -> None:
    ledger = _fill(engine)
    with engine.connect() as conn:
        newest = conn.execute(text("SELECT max(id) FROM entries")).scalar_one()
        earned = _entry(conn, ledger.earned).id
    # The newest entry with no fact yet, as when the statistics worker is a batch behind: counted later. A plain
    # DELETE, so that the rollups lose it too (docs/design.md §5.2), as they would never have had it.
    _not_yet_counted(engine, newest)
    report = verify_ledger(engine)
    statistics = next(check for check in report.checks if check.name == "statistics")
    assert report.ok and statistics.note == "1 entry not yet counted by the statistics worker", statistics
    with engine.connect() as conn:
        assert check_statistics(conn, grace=timedelta(0)).ok, "newer than the newest fact: not yet counted"

    # An older one with none, while later entries are counted: within the grace a partition may trail another,
    # beyond it the fact was lost.
    _not_yet_counted(engine, earned)
    assert verify_ledger(engine).ok
    with engine.connect() as conn:
        lost = check_statistics(conn, grace=timedelta(0))
    assert lost.problem == (f"entry {earned} (event {ledger.earned}, hours_approved): has no statistics fact, "
                            "though later entries are counted")


def test_rollups_that_differ_from_the_facts_are_named_and_worked_out_again(engine: Engine, database_url: str) -> None:
    """A sum changed in `stats_cells` and a previous active month in `stats_volunteer_months`, by hand: verify
    names both tables; `timecredits rebuild-statistics` works them out from the facts, and verify holds again."""
    _fill(engine)
    _tamper(engine, "UPDATE stats_cells SET credits_earned = credits_earned + 100 WHERE (tableoid, ctid) = "
                    "(SELECT tableoid, ctid FROM stats_cells WHERE hours_facts > 0 LIMIT 1)")
    _tamper(engine, "UPDATE stats_volunteer_months SET prev_active = DATE '1999-01-01' WHERE (tableoid, ctid) = "
                    "(SELECT tableoid, ctid FROM stats_volunteer_months LIMIT 1)")
    failures = _failures(engine)
    assert set(failures) == {"statistics"}, failures
    assert failures["statistics"] == ("the statistics rollups differ from the facts: 2 row(s) of stats_cells, "
                                      "2 row(s) of stats_volunteer_months (docs/design.md §5.2)")
    result = subprocess.run([sys.executable, "-m", "timecredits.cli", "rebuild-statistics"], capture_output=True,
                            text=True, env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"},
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stats_cells: 2 row(s) differed from the facts; 0 now" in result.stdout
    assert "stats_volunteer_months: 2 row(s) differed from the facts; 0 now" in result.stdout
    assert "stats_first_hours: 0 row(s) differed from the facts; 0 now" in result.stdout
    assert verify_ledger(engine).ok
