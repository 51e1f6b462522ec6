"""Erasure and retention on real PostgreSQL (docs/design.md §5.15): the worker refuses anything new about an erased
volunteer, even an event that arrives late; the erasure and the retention sweep run as the runtime role; the sweep
deletes what is older than each setting and keeps what is newer, as the clock moves."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text

from api.auth import Principal, Role, create_token
from api.errors import ApiError
from api.services import erasure
from ledger.events import BookingCancelled, CreditsGifted, HoursApproved, HoursLogged, OpportunityBooked, VolunteerRegistered
from ledger.pg import notes, schema
from ledger.pg.processing import EventProcessor
from ledger.pg.verify import verify_ledger
from tests.integration.test_processing import AREA, ev, registry
from tests.integration.test_runtime_role import Runtime, runtime  # noqa: F401 - the fixture
from timecredits.retention import SWEPT, sweep
from timecredits.settings import Settings
from web import people
from web.people import PersonRole

pytestmark = pytest.mark.integration

ADMIN = Principal(Role.ADMIN, token_id="test")
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _balance(engine: Engine, account: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(schema.balances.c.balance).where(schema.balances.c.account_key == account))
                   .scalar_one())


def test_the_worker_refuses_anything_new_about_an_erased_volunteer_even_an_event_that_arrives_late(
        engine: Engine) -> None:
    processor = EventProcessor(engine)
    assert all(o.applied for o in processor.process(registry()).outcomes)
    earned = ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=300,
                            activity="Digging"))
    pending = ev(HoursLogged(volunteer_id="ana", org_id="food-bank", date=date(2026, 11, 1), minutes=60,
                             activity="Sorting"))
    for_ben = ev(HoursLogged(volunteer_id="ben", org_id="garden", date=date(2026, 11, 1), minutes=120,
                             activity="Digging"))
    assert all(o.applied for o in processor.process([earned, pending, for_ben]).outcomes)
    booked = ev(OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=100))
    assert processor.process([booked]).outcomes[0].applied
    assert (_balance(engine, "volunteer:ana"), _balance(engine, "holds:ana")) == (400, 100)

    done = erasure.erase(engine, ADMIN, "ana", now=NOW)
    assert done.volunteer_id == "ana" and done.counts["memberships"] == 2

    late = [
        ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=60, activity="Digging")),
        ev(HoursApproved(log_event_id=pending.event_id, volunteer_id="ana", org_id="food-bank")),
        ev(CreditsGifted(from_volunteer_id="ben", to_volunteer_id="ana", amount=100)),
        ev(CreditsGifted(from_volunteer_id="ana", to_volunteer_id="ben", amount=100)),
        ev(OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=100)),
        ev(VolunteerRegistered(volunteer_id="ana", area=AREA, consent_stats=True)),
        ev(CreditsGifted(from_volunteer_id="ben", to_volunteer_id="cy", amount=100)),  # not erased: unknown
    ]
    outcomes = processor.process(late).outcomes
    assert [o.reason for o in outcomes] == ["volunteer_erased"] * 6 + ["unknown_volunteer"]
    assert "erased" in (outcomes[0].message or "")
    # Their credits stay in the pseudonymous account, unspendable; nobody else is held up.
    assert _balance(engine, "volunteer:ana") == 400 and _balance(engine, "volunteer:ben") == 200
    # A booking made before still settles: it moves only credits the ledger holds for them already.
    cancelled = ev(BookingCancelled(booking_event_id=booked.event_id, volunteer_id="ana"))
    assert processor.process([cancelled]).outcomes[0].applied
    assert (_balance(engine, "volunteer:ana"), _balance(engine, "holds:ana")) == (500, 0)
    assert processor.process([ev(CreditsGifted(from_volunteer_id="ben", to_volunteer_id="ana", amount=1))]
                             ).outcomes[0].reason == "volunteer_erased"
    assert verify_ledger(engine).ok
    with pytest.raises(ApiError) as again:
        erasure.erase(engine, ADMIN, "ana")
    assert (again.value.status, again.value.code) == (410, "volunteer_erased")
    with pytest.raises(ApiError) as nobody:
        erasure.erase(engine, ADMIN, "zed")
    assert (nobody.value.status, nobody.value.code) == (404, "unknown_volunteer")
    for role in (Role.LEAD, Role.ORG, Role.VOLUNTEER):
        with pytest.raises(ApiError) as refused:
            erasure.erase(engine, Principal(role, org_id="garden" if role is Role.ORG else None,
                                            volunteer_id="ben" if role is Role.VOLUNTEER else None), "ben")
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT erased_at FROM volunteers WHERE id = 'ben'")).scalar() is None


def _everything_about(engine: Engine, volunteer_id: str) -> dict[str, Any]:
    """A volunteer with a row in every erasable table that holds them, written as the API and web app write them."""
    with engine.begin() as conn:
        conn.execute(insert(schema.volunteer_profiles).values(volunteer_id=volunteer_id, display_name="Amina Begum",
                                                              email="amina@example.org"))
        conn.execute(text("UPDATE volunteers SET seb_detail = 'routine_manual_and_service' WHERE id = :v"),
                     {"v": volunteer_id})
        conn.execute(insert(schema.volunteer_references).values(org_id="garden", reference="AB-1",
                                                                volunteer_id=volunteer_id))
        conn.execute(insert(schema.membership_requests).values(org_id="lido", volunteer_id=volunteer_id))
        conn.execute(insert(schema.waitlist).values(opportunity_id="swim", volunteer_id=volunteer_id, joined_at=NOW))
        for used in (False, True):
            code_id = uuid.uuid4()
            conn.execute(insert(schema.spend_codes).values(
                id=code_id, volunteer_id=volunteer_id, partner_id="lido", max_amount=100,
                code_hash=hashlib.sha256(code_id.bytes).digest(), created_at=NOW, expires_at=NOW + timedelta(days=1)))
            if used:
                conn.execute(insert(schema.spend_code_uses).values(code_id=code_id, event_id=uuid.uuid4(),
                                                                   used_at=NOW))
        entry = conn.execute(text("SELECT e.event_id FROM entries e JOIN postings p ON p.entry_id = e.id "
                                  "WHERE p.account_key = :a LIMIT 1"), {"a": f"volunteer:{volunteer_id}"}).scalar_one()
        conn.execute(insert(schema.corrections).values(event_id=uuid.uuid4(), target_event_id=entry,
                                                       reason_code="other", reason="Amina asked us to",
                                                       requested_by="admin:test"))
    person = people.add_person(engine, "Amina Begum", PersonRole.VOLUNTEER, email="amina@example.org",
                               volunteer_id=volunteer_id)
    card, link = people.new_card(engine, person.id), people.new_link(engine, person.id)
    session, _ = people.start_session(engine, person)
    people.request_link(engine, "amina@example.org", "203.0.113.9")
    create_token(engine, Role.VOLUNTEER, volunteer_id=volunteer_id, label="Amina's phone")
    return {"person": person, "card": card, "link": link, "session": session}


def test_the_runtime_role_erases_everything_erasable_and_nothing_else(engine: Engine,
                                                                      runtime: Runtime) -> None:  # noqa: F811
    processor = EventProcessor(engine)
    assert all(o.applied for o in processor.process(registry()).outcomes)
    logged = ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=120))
    assert processor.process([logged]).outcomes[0].applied
    with engine.begin() as conn:  # what the organisation wrote about those hours, as the API keeps it
        notes.write(conn, logged.event_id, notes.HOURS_ACTIVITY, "Digging with Amina")
    held = _everything_about(engine, "ana")

    done = erasure.erase(runtime.engine, ADMIN, "ana", now=NOW)

    assert done.counts == {
        "profile": 1, "detailed_background": 1, "sign_in": 1, "sessions": 1, "sign_in_links": 2,
        "sign_in_cards": 1, "api_tokens": 1, "references": 1, "membership_requests": 1, "memberships": 2,
        "correction_reasons": 1, "hours_notes": 1, "spend_codes": 1, "waiting_lists": 1}
    assert list(done.counts) == list(erasure.DELETED)
    assert people.use_card(engine, held["card"]) is None
    assert people.use_link(engine, held["link"]) is None
    assert people.resume_session(engine, held["session"]) is None
    assert people.request_link(engine, "amina@example.org", "203.0.113.9") is None
    with engine.connect() as conn:
        row = conn.execute(text("SELECT email, display_name, disabled_at FROM people WHERE volunteer_id = 'ana'")).one()
        assert (row.email, row.display_name, row.disabled_at is not None) == (None, erasure.ERASED_NAME, True)
        assert conn.execute(text("SELECT count(*) FROM spend_codes WHERE volunteer_id = 'ana'")).scalar() == 1  # used
        assert conn.execute(text("SELECT label, revoked_at IS NOT NULL FROM api_tokens WHERE volunteer_id = 'ana'")
                            ).one() == ("", True)
        asked = conn.execute(select(func.count()).select_from(schema.sign_in_requests).where(
            schema.sign_in_requests.c.email_sha256 == people.digest("amina@example.org"))).scalar()
        assert asked == 1  # the request asked after the erasure; the one before went with it
        kept = conn.execute(text("SELECT area, age_band, seb, seb_detail, consent_stats, erased_at "
                                 "FROM volunteers WHERE id = 'ana'")).one()
        assert tuple(kept) == (AREA, "25-34", "lower", None, True, NOW)
        assert conn.execute(select(func.count()).select_from(schema.audit_log).where(
            schema.audit_log.c.action == "volunteer_erased", schema.audit_log.c.subject == "volunteer:ana",
            schema.audit_log.c.actor == "admin:test")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM hours_logs WHERE volunteer_id = 'ana'")).scalar() == 1
    assert _balance(engine, "volunteer:ana") == 200
    assert verify_ledger(runtime.engine).ok


def _rows_of_every_age(engine: Engine) -> None:
    """For each swept table, a row that ended 40, 10 and 2 days before NOW (and a used spend code of 40)."""
    processor = EventProcessor(engine)
    assert all(o.applied for o in processor.process(registry()).outcomes)
    person = people.add_person(engine, "Ben", PersonRole.VOLUNTEER, volunteer_id="ben")
    with engine.begin() as conn:
        for age in (40, 10, 2):
            at = NOW - timedelta(days=age)
            conn.execute(insert(schema.idempotency_keys).values(caller=b"c", path="/v1/hours", key=f"k{age}",
                                                                body_sha256=b"x", created_at=at))
            conn.execute(insert(schema.web_sessions).values(
                id_sha256=f"s{age}".encode(), person_id=person.id, csrf_token="t", created_at=at - timedelta(days=1),
                last_seen_at=at, expires_at=at))
            conn.execute(insert(schema.sign_in_links).values(token_sha256=f"l{age}".encode(), person_id=person.id,
                                                             created_at=at, expires_at=at))
            conn.execute(insert(schema.sign_in_requests).values(email_sha256=b"e", address="203.0.113.9",
                                                                requested_at=at))
            conn.execute(insert(schema.spend_code_failures).values(actor="org:lido", failed_at=at))
            for used in (False, True):
                code_id = uuid.uuid4()
                conn.execute(insert(schema.spend_codes).values(
                    id=code_id, volunteer_id="ben", partner_id="lido", max_amount=100,
                    code_hash=hashlib.sha256(code_id.bytes).digest(), created_at=at - timedelta(hours=1),
                    expires_at=at))
                if used:
                    conn.execute(insert(schema.spend_code_uses).values(code_id=code_id, event_id=uuid.uuid4(),
                                                                       used_at=at - timedelta(minutes=30)))
        # A session revoked 40 days ago whose absolute expiry is still to come: it ended when it was revoked.
        conn.execute(insert(schema.web_sessions).values(
            id_sha256=b"revoked", person_id=person.id, csrf_token="t", created_at=NOW - timedelta(days=41),
            last_seen_at=NOW - timedelta(days=40), expires_at=NOW + timedelta(days=1),
            revoked_at=NOW - timedelta(days=40)))


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()) for name in SWEPT}


def test_the_sweep_deletes_what_is_older_than_its_setting_and_keeps_what_is_newer(engine: Engine,
                                                                                   runtime: Runtime) -> None:  # noqa: F811
    _rows_of_every_age(engine)
    settings = Settings(TIMECREDITS_KEEP_IDEMPOTENCY_KEYS_DAYS=7, TIMECREDITS_KEEP_SESSIONS_DAYS=30,
                        TIMECREDITS_KEEP_SIGN_IN_LINKS_DAYS=7, TIMECREDITS_KEEP_SIGN_IN_REQUESTS_DAYS=1,
                        TIMECREDITS_KEEP_SPEND_CODES_DAYS=30, TIMECREDITS_KEEP_SPEND_CODE_FAILURES_DAYS=5)
    before = _counts(engine)
    assert before == {"idempotency_keys": 3, "web_sessions": 4, "sign_in_links": 3, "sign_in_requests": 3,
                      "spend_codes": 6, "spend_code_failures": 3}

    swept = sweep(runtime.engine, NOW, settings)  # as the API and jobs connect

    assert swept == {"idempotency_keys": 2, "web_sessions": 2, "sign_in_links": 2, "sign_in_requests": 3,
                     "spend_codes": 1, "spend_code_failures": 2}
    assert {name: before[name] - swept[name] for name in SWEPT} == _counts(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT key FROM idempotency_keys")).scalars().all() == ["k2"]
        assert sorted(bytes(s) for s in conn.execute(text("SELECT id_sha256 FROM web_sessions")).scalars()) == [
            b"s10", b"s2"]
        # Every used code stays, whatever its age: the append-only spend_code_uses names it.
        assert conn.execute(text("SELECT count(*) FROM spend_codes c JOIN spend_code_uses u ON u.code_id = c.id")
                            ).scalar() == 3
    assert sweep(runtime.engine, NOW, settings) == dict.fromkeys(SWEPT, 0)  # nothing more at the same time

    later = sweep(runtime.engine, NOW + timedelta(days=30), settings)  # the clock moves on a month
    assert later == {"idempotency_keys": 1, "web_sessions": 2, "sign_in_links": 1, "sign_in_requests": 0,
                     "spend_codes": 2, "spend_code_failures": 1}
    assert _counts(engine) == {"idempotency_keys": 0, "web_sessions": 0, "sign_in_links": 0, "sign_in_requests": 0,
                               "spend_codes": 3, "spend_code_failures": 0}


def _cli(database_url: str, *args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TIMECREDITS_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "timecredits.cli", *args], input=answer,
                          env={**clean, "DATABASE_URL": database_url, "COLUMNS": "300"},
                          capture_output=True, text=True, timeout=120)


def test_timecredits_erase_asks_first_and_timecredits_sweep_says_what_it_deleted(database_url: str,
                                                                                 engine: Engine) -> None:
    processor = EventProcessor(engine)
    assert all(o.applied for o in processor.process(registry()).outcomes)
    with engine.begin() as conn:
        conn.execute(insert(schema.volunteer_profiles).values(volunteer_id="ben", display_name="Ben Adeyemi"))
        conn.execute(insert(schema.idempotency_keys).values(caller=b"c", path="/v1/hours", key="old",
                                                            body_sha256=b"x", created_at=NOW - timedelta(days=400)))

    declined = _cli(database_url, "erase", "ben", answer="n\n")
    assert declined.returncode == 1 and "Nothing was erased" in declined.stdout
    assert "their name and e-mail address" in declined.stdout and "It keeps:" in declined.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT erased_at FROM volunteers WHERE id = 'ben'")).scalar() is None

    erased = _cli(database_url, "erase", "ben", "--yes")
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert "Erased the personal data of ben (1 profile, 2 memberships)" in erased.stdout
    again = _cli(database_url, "erase", "ben", "--yes")
    assert again.returncode == 1 and "erased already" in again.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_log WHERE action = 'volunteer_erased'")
                            ).scalars().all() == ["admin:cli"]
        assert conn.execute(text("SELECT count(*) FROM volunteer_profiles")).scalar() == 0

    swept = _cli(database_url, "sweep")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "1 idempotency keys deleted" in swept.stdout and "0 ended web sessions deleted" in swept.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar() == 0
