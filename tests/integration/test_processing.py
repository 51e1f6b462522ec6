"""Events applied to the registry, the hours flow and the ledger in one transaction, on real PostgreSQL."""
from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from ledger.events import (
    BookingAttended,
    BookingCancelled,
    CreditsGifted,
    CreditsRedeemed,
    DecodedEvent,
    EntryReversed,
    HoursApproved,
    HoursLogged,
    HoursRejected,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    decode_event,
    encode_envelope,
    encode_event,
    new_event,
)
from tests.ledger_helpers import actor_for
from ledger.pg.processing import EventProcessor, event_status
from ledger.pg.repository import LedgerRepository
from ledger.pg.verify import verify_ledger

WHEN = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
AREA = "E09000030"


def ev(payload, event_id: UUID | None = None) -> DecodedEvent:  # type: ignore[no-untyped-def]
    _, raw = encode_event(payload, actor=actor_for(payload), event_id=event_id, occurred_at=WHEN)
    decoded = decode_event(raw)
    assert isinstance(decoded, DecodedEvent), decoded
    return decoded


def older_registration(**fields: object) -> DecodedEvent:
    """A `VolunteerRegistered` as producers wrote it before the consent rule (docs/design.md §5.16): answers, or
    the background in words, whatever the consent."""
    envelope = new_event(VolunteerRegistered(volunteer_id=str(fields["volunteer_id"]), area=str(fields["area"]),
                                             consent_stats=bool(fields["consent_stats"])),
                         actor="admin", occurred_at=WHEN)
    decoded = decode_event(encode_envelope(envelope.model_copy(update={"payload": {**envelope.payload, **fields}})))
    assert isinstance(decoded, DecodedEvent), decoded
    return decoded


def test_an_older_registration_keeps_answers_only_with_consent_and_never_the_words(engine: Engine) -> None:
    processor = EventProcessor(engine)
    outcomes = processor.process([
        older_registration(volunteer_id="old-no", area=AREA, consent_stats=False, age_band="35-44", seb="lower",
                           seb_detail="my mum was a nurse"),
        older_registration(volunteer_id="old-yes", area=AREA, consent_stats=True, age_band="16-24", seb="lower",
                           seb_detail="my dad drove a bus"),
    ]).outcomes
    assert all(o.applied for o in outcomes)
    with engine.connect() as conn:
        rows = {r.id: (r.age_band, r.seb, r.seb_detail) for r in conn.execute(text(
            "SELECT id, age_band, seb, seb_detail FROM volunteers WHERE id LIKE 'old-%'"))}
    assert rows == {"old-no": (None, None, None), "old-yes": ("16-24", "lower", None)}


def test_the_worker_keeps_no_words_of_hours_or_of_a_rejection(engine: Engine) -> None:
    processor = EventProcessor(engine)
    assert all(o.applied for o in processor.process(registry()).outcomes)
    logged = older_hours(volunteer_id="ana", org_id="food-bank", activity="Helped Mrs Patel")
    rejected = ev(HoursRejected(log_event_id=logged.event_id, volunteer_id="ana", org_id="food-bank",
                                reason="Ann was ill"))
    assert all(o.applied for o in processor.process([logged, rejected]).outcomes)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT l.activity, d.reason, d.decision FROM hours_logs l JOIN hours_decisions d "
                                   "ON d.log_event_id = l.event_id WHERE l.event_id = :id"),
                              {"id": logged.event_id}).one()
    assert tuple(stored) == (None, None, "rejected")


def older_hours(**fields: object) -> DecodedEvent:
    """An `HoursLogged` as producers wrote it while it carried the description."""
    envelope = new_event(HoursLogged(volunteer_id=str(fields["volunteer_id"]), org_id=str(fields["org_id"]),
                                     date=date(2026, 11, 1), minutes=60), actor="org:food-bank", occurred_at=WHEN)
    decoded = decode_event(encode_envelope(envelope.model_copy(update={"payload": {**envelope.payload, **fields}})))
    assert isinstance(decoded, DecodedEvent), decoded
    return decoded


def registry() -> list[DecodedEvent]:
    return [
        ev(OrganisationRegistered(org_id="food-bank", name="Food Bank", area=AREA, kinds=frozenset({"community"}))),
        ev(OrganisationRegistered(org_id="garden", name="Garden", area=AREA, kinds=frozenset({"community"}),
                                  auto_approve=True)),
        ev(OrganisationRegistered(org_id="lido", name="Lido", area=AREA, kinds=frozenset({"partner"}))),
        ev(VolunteerRegistered(volunteer_id="ana", area=AREA, consent_stats=True, age_band="25-34", seb="lower")),
        ev(VolunteerRegistered(volunteer_id="ben", area=AREA, consent_stats=False)),
        ev(OpportunityListed(opportunity_id="swim", partner_id="lido", title="Swim", category="sport", cost=100,
                             area=AREA)),
        *[ev(MembershipStarted(membership_id=uuid4(), org_id=org, volunteer_id=volunteer))
          for org in ("food-bank", "garden") for volunteer in ("ana", "ben")],
    ]


@pytest.fixture()
def processor(engine: Engine) -> EventProcessor:
    processor = EventProcessor(engine)
    assert all(o.applied for o in processor.process(registry()).outcomes)
    return processor


def test_hours_earn_only_when_approved(processor: EventProcessor, engine: Engine) -> None:
    logged = ev(HoursLogged(volunteer_id="ana", org_id="food-bank", date=date(2026, 11, 1), minutes=90))
    result = processor.process([logged])
    assert result.outcomes[0].applied and result.outcomes[0].entry_id is None
    assert LedgerRepository(engine).volunteer_balance("ana").available == 0

    approval = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food-bank"))
    second = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food-bank"))
    reject = ev(HoursRejected(log_event_id=logged.event_id, volunteer_id="ana", org_id="food-bank"))
    result = processor.process([approval, second, reject])
    assert [o.reason for o in result.outcomes] == [None, "already_decided", "already_decided"]
    assert result.outcomes[0].entry_id is not None
    assert [c.kind for c in result.committed] == ["hours_approved"]
    assert LedgerRepository(engine).volunteer_balance("ana").available == 150
    assert event_status(engine, approval.event_id).entry_id == result.outcomes[0].entry_id  # type: ignore[union-attr]
    assert event_status(engine, second.event_id).reason == "already_decided"  # type: ignore[union-attr]
    assert event_status(engine, logged.event_id).status == "applied"  # type: ignore[union-attr]


def test_auto_approving_organisation_earns_at_once(processor: EventProcessor, engine: Engine) -> None:
    logged = ev(HoursLogged(volunteer_id="ben", org_id="garden", date=date(2026, 11, 1), minutes=120))
    [outcome] = processor.process([logged]).outcomes
    assert outcome.applied and outcome.entry_id is not None
    assert LedgerRepository(engine).volunteer_balance("ben").available == 200
    late = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ben", org_id="garden"))
    assert processor.process([late]).outcomes[0].reason == "already_decided"


def test_book_attend_cancel_redeem_gift_reverse(processor: EventProcessor, engine: Engine) -> None:
    logged = ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=600))
    book1 = ev(OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=100))
    book2 = ev(OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=100))
    gift = ev(CreditsGifted(from_volunteer_id="ana", to_volunteer_id="ben", amount=150))
    batch = [
        logged,
        book1,
        book2,
        ev(BookingAttended(booking_event_id=book1.event_id, volunteer_id="ana")),
        ev(BookingCancelled(booking_event_id=book2.event_id, volunteer_id="ana")),
        ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=250)),
        gift,
        ev(EntryReversed(target_event_id=gift.event_id, volunteer_id="ana", reason="sent to the wrong person")),
    ]
    result = processor.process(batch)
    assert all(o.applied for o in result.outcomes), result.outcomes
    repository = LedgerRepository(engine)
    assert repository.volunteer_balance("ana").available == 1000 - 100 - 250
    assert repository.volunteer_balance("ben").available == 0
    assert repository.balance("partner:lido") == 350
    assert len(result.committed) == 8
    assert verify_ledger(engine).ok


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (HoursLogged(volunteer_id="zed", org_id="food-bank", date=date(2026, 11, 1), minutes=60), "unknown_volunteer"),
        (HoursLogged(volunteer_id="ana", org_id="nowhere", date=date(2026, 11, 1), minutes=60), "unknown_organisation"),
        (HoursLogged(volunteer_id="ana", org_id="lido", date=date(2026, 11, 1), minutes=60), "not_a_community_organisation"),
        (HoursApproved(log_event_id=UUID(int=7), volunteer_id="ana", org_id="food-bank"), "unknown_log"),
        (OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=50), "opportunity_mismatch"),
        (OpportunityBooked(volunteer_id="ana", opportunity_id="opera", partner_id="lido", amount=100), "unknown_opportunity"),
        (OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=100), "insufficient_credits"),
        (CreditsRedeemed(volunteer_id="ana", partner_id="food-bank", amount=1), "not_a_partner"),
        (CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=1, opportunity_id="opera"), "unknown_opportunity"),
        (CreditsGifted(from_volunteer_id="ana", to_volunteer_id="zed", amount=1), "unknown_volunteer"),
        (EntryReversed(target_event_id=UUID(int=9), volunteer_id="ana", reason="typo"), "unknown_entry"),
    ],
)
def test_refusals_are_recorded_with_their_reason(processor: EventProcessor, engine: Engine, payload, reason: str) -> None:  # type: ignore[no-untyped-def]
    event = ev(payload)
    [outcome] = processor.process([event]).outcomes
    assert (outcome.status, outcome.reason) == ("rejected", reason)
    assert event_status(engine, event.event_id).reason == reason  # type: ignore[union-attr]
    [again] = processor.process([event]).outcomes
    assert again.duplicate and again.reason == reason


def test_hours_approved_by_another_organisation_are_refused(processor: EventProcessor) -> None:
    logged = ev(HoursLogged(volunteer_id="ana", org_id="food-bank", date=date(2026, 11, 1), minutes=60))
    approval = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="garden"))
    outcomes = processor.process([logged, approval]).outcomes
    assert outcomes[1].reason == "wrong_organisation"


def test_undecodable_items_are_rejected_and_the_rest_applied(processor: EventProcessor, engine: Engine) -> None:
    good = ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=60))
    bad_payload = decode_event(
        b'{"event_id":"00000000-0000-4000-8000-000000000001","type":"HoursLogged","version":1,'
        b'"occurred_at":"2026-11-02T12:00:00Z","actor":"t","payload":{"minutes":-1}}'
    )
    outcomes = processor.process([decode_event(b"\xff\xfe"), bad_payload, good]).outcomes
    assert [o.status for o in outcomes] == ["rejected", "rejected", "applied"]
    assert [o.reason for o in outcomes[:2]] == ["undecodable", "invalid_payload"]
    assert event_status(engine, UUID("00000000-0000-4000-8000-000000000001")).reason == "invalid_payload"  # type: ignore[union-attr]


def test_a_batch_delivered_again_applies_nothing_twice_and_republishes_its_entries(processor: EventProcessor, engine: Engine) -> None:
    batch = [
        ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=60)),
        ev(CreditsGifted(from_volunteer_id="ana", to_volunteer_id="ben", amount=50)),
    ]
    first = processor.process(batch)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM entries")).scalar()
    again = processor.process(batch + batch)
    assert all(o.duplicate for o in again.outcomes)
    assert [o.entry_id for o in again.outcomes] == [o.entry_id for o in first.outcomes] * 2
    assert {c.entry_id for c in again.committed} == {c.entry_id for c in first.committed}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM entries")).scalar() == before


def test_hours_decisions_are_append_only_and_once_only(processor: EventProcessor, engine: Engine) -> None:
    logged = ev(HoursLogged(volunteer_id="ana", org_id="food-bank", date=date(2026, 11, 1), minutes=60))
    processor.process([logged, ev(HoursRejected(log_event_id=logged.event_id, volunteer_id="ana", org_id="food-bank"))])
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="append_only"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE hours_decisions SET decision = 'approved'"))
    with pytest.raises(DBAPIError, match="hours_decisions_pkey"):  # a log is decided once
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO hours_decisions VALUES (:log, gen_random_uuid(), 'rejected', '', NULL, now(), "
                     "'admin:test')"),
                {"log": logged.event_id},
            )


def test_registry_events_of_one_batch_apply_in_order_the_last_about_an_entity_winning(
        processor: EventProcessor, engine: Engine) -> None:
    """Upserts are written a run of one table at a time: an id twice in a run, and runs interleaved, still end
    as the events say, in order."""
    batch = [
        ev(VolunteerRegistered(volunteer_id="cai", area=AREA, consent_stats=False)),
        older_registration(volunteer_id="ana", area="E09000025", consent_stats=False, age_band="35-44"),
        ev(VolunteerRegistered(volunteer_id="cai", area="E09000012", consent_stats=True, seb="professional")),
        ev(VolunteerRegistered(volunteer_id="cai", area=AREA, consent_stats=True, age_band="16-24")),
        ev(OrganisationRegistered(org_id="pool", name="Pool", area=AREA, kinds=frozenset({"partner"}))),
        ev(OpportunityListed(opportunity_id="lane", partner_id="pool", title="Lane", category="sport", cost=50,
                             area=AREA)),
        ev(OrganisationRegistered(org_id="pool", name="Pool and Gym", area=AREA, kinds=frozenset({"partner"}))),
        ev(OpportunityListed(opportunity_id="lane", partner_id="pool", title="Lane, longer", category="sport",
                             cost=75, area=AREA)),
        ev(VolunteerRegistered(volunteer_id="ana", area="E09000028", consent_stats=True)),
    ]
    assert all(o.applied for o in processor.process(batch).outcomes)
    with engine.connect() as conn:
        volunteers = {row.id: (row.area, row.consent_stats, row.age_band, row.seb) for row in conn.execute(
            text("SELECT id, area, consent_stats, age_band, seb FROM volunteers WHERE id IN ('ana', 'cai')"))}
        organisation = conn.execute(text("SELECT name FROM organisations WHERE id = 'pool'")).scalar_one()
        opportunity = conn.execute(text("SELECT title, cost FROM opportunities WHERE id = 'lane'")).one()
    assert volunteers == {"ana": ("E09000028", True, None, None), "cai": (AREA, True, "16-24", None)}
    assert (organisation, tuple(opportunity)) == ("Pool and Gym", ("Lane, longer", 75))


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_refusal_by_a_constraint_the_code_does_not_know_decides_nothing(
        processor: EventProcessor, engine: Engine) -> None:
    """A schema migrated ahead of the code: a CHECK the code's rows all fail, named nowhere in the code (as a
    CHECK on new rows is to workers of an older release still running). No event is the cause, so
    none is recorded as rejected: the error is raised, the events stay undecided, and once the schema and the
    code agree again the same batch, delivered again, applies as if nothing had happened."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE entries ADD CONSTRAINT entries_from_a_later_migration CHECK (false) NOT VALID"))
    batch = [
        ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=60)),
        ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=50)),
        ev(HoursLogged(volunteer_id="ben", org_id="garden", date=date(2026, 11, 1), minutes=30)),
    ]
    with pytest.raises(IntegrityError, match="entries_from_a_later_migration"):
        processor.process(batch)
    assert [event_status(engine, item.event_id) for item in batch] == [None, None, None]
    assert (_count(engine, "rejections"), _count(engine, "hours_logs"), _count(engine, "entries")) == (0, 0, 0)

    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE entries DROP CONSTRAINT entries_from_a_later_migration"))
    outcomes = processor.process(batch).outcomes
    assert [(o.status, o.duplicate) for o in outcomes] == [("applied", False)] * 3
    assert LedgerRepository(engine).volunteer_balance("ana").available == 50
    assert _count(engine, "rejections") == 0


def test_a_refusal_by_a_constraint_of_the_ledgers_rules_is_still_recorded(
        processor: EventProcessor, engine: Engine) -> None:
    """The other side of the rule above: a refusal the database names with one of the ledger's reasons is the
    event's own, split out of its batch and recorded. (A trigger stands in for a concurrent spend that the rules,
    deciding before it committed, could not see.)"""
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION tc_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.volunteer_id = 'ben' THEN RAISE EXCEPTION 'balance_not_negative: entry % would take it below zero', "
            "NEW.event_id USING ERRCODE = 'check_violation', CONSTRAINT = 'balance_not_negative'; END IF; "
            "RETURN NEW; END $$"))
        conn.execute(text("CREATE TRIGGER tc_test_refuse BEFORE INSERT ON entries FOR EACH ROW "
                          "EXECUTE FUNCTION tc_test_refuse()"))
    ana = ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=60))
    ben = ev(HoursLogged(volunteer_id="ben", org_id="garden", date=date(2026, 11, 1), minutes=60))
    outcomes = processor.process([ana, ben]).outcomes
    assert [(o.status, o.reason) for o in outcomes] == [("applied", None), ("rejected", "insufficient_credits")]
    assert event_status(engine, ben.event_id).reason == "insufficient_credits"  # type: ignore[union-attr]


# --- corrections (docs/design.md §5.14) ----------------------------------------------------------------------------


def _at(payload, actor: str, occurred_at: datetime) -> DecodedEvent:  # type: ignore[no-untyped-def]
    decoded = decode_event(encode_event(payload, actor=actor, occurred_at=occurred_at)[1])
    assert isinstance(decoded, DecodedEvent), decoded
    return decoded


def test_a_correction_is_an_admins_or_the_approving_organisations_within_thirty_days(
        processor: EventProcessor, engine: Engine) -> None:
    """The worker decides from the committed ledger (the approval's time as PostgreSQL holds it) and the events'
    own times, so a replay decides the same."""
    from datetime import timedelta

    from ledger.actors import admin_actor, org_actor, volunteer_actor

    logs = [ev(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=60))
            for _ in range(3)]
    assert all(o.applied for o in processor.process(logs).outcomes)

    def correct(log: DecodedEvent, actor: str, days_later: int) -> str | None:
        payload = EntryReversed(target_event_id=log.event_id, volunteer_id="ana", reason_code="approved_in_error")
        [outcome] = processor.process([_at(payload, actor, WHEN + timedelta(days=days_later))]).outcomes
        return outcome.reason

    assert correct(logs[0], volunteer_actor("ana"), 1) == "authorisation_required"
    assert correct(logs[0], "lead:t", 1) == "authorisation_required"
    assert correct(logs[0], org_actor("food-bank"), 1) == "not_yours_to_correct"
    assert correct(logs[0], org_actor("garden"), 31) == "correction_window_closed"
    assert correct(logs[0], org_actor("garden"), 30) is None
    assert correct(logs[0], org_actor("garden"), 30) == "already_reversed"
    assert correct(logs[1], admin_actor("t"), 400) is None
    assert LedgerRepository(engine).volunteer_balance("ana").available == 100
    assert verify_ledger(engine).ok


@pytest.mark.parametrize("sql", [
    "UPDATE audit_log SET action = 'token_issued'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
])
def test_the_audit_log_is_append_only_even_for_the_owner(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (actor, action, subject) VALUES ('admin:t', 'token_revoked', "
                          "'token:x')"))
    with pytest.raises(Exception, match="append_only"), engine.begin() as conn:
        conn.execute(text(sql))


@pytest.mark.parametrize(("sql", "constraint"), [
    ("INSERT INTO audit_log (actor, action, subject) VALUES ('admin:t', 'anything', 'token:x')",
     "audit_log_action_known"),
    ("INSERT INTO audit_log (actor, action, subject) VALUES ('admin:t', 'token_revoked', 'Ana Smith')",
     "audit_log_subject_is_an_id"),
    ("INSERT INTO corrections (event_id, target_event_id, reason_code, reason, requested_by) "
     "VALUES (gen_random_uuid(), gen_random_uuid(), 'other', '', 'admin:t')", "corrections_reason_length"),
    ("INSERT INTO corrections (event_id, target_event_id, reason_code, reason, requested_by) "
     "VALUES (gen_random_uuid(), gen_random_uuid(), 'because', 'x', 'admin:t')", "corrections_reason_code_known"),
])
def test_postgresql_keeps_the_audit_log_and_corrections_to_their_codes(engine: Engine, sql: str,
                                                                       constraint: str) -> None:
    with pytest.raises(IntegrityError, match=constraint), engine.begin() as conn:
        conn.execute(text(sql))


def test_an_older_listing_met_late_does_not_undo_a_newer_edit(processor: EventProcessor, engine: Engine) -> None:
    """The API writes an edit's row at once; the worker may meet the listing it replaces afterwards (docs/design.md
    §4.2): the row keeps the newer version, and a still newer listing applies."""
    from datetime import timedelta

    def listed(title: str, at: datetime) -> DecodedEvent:
        payload = OpportunityListed(opportunity_id="swim", partner_id="lido", title=title, category="sport",
                                    cost=100, area=AREA)
        decoded = decode_event(encode_event(payload, actor="org:lido", occurred_at=at)[1])
        assert isinstance(decoded, DecodedEvent)
        return decoded

    with engine.begin() as conn:  # what the API's edit writes, versioned by its event's time
        conn.execute(text("UPDATE opportunities SET title = 'Early swim', updated_at = :at WHERE id = 'swim'"),
                     {"at": WHEN + timedelta(hours=1)})
    assert all(o.applied for o in processor.process([listed("Swim", WHEN + timedelta(minutes=1))]).outcomes)

    def title() -> str:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT title FROM opportunities WHERE id = 'swim'")).scalar_one())

    assert title() == "Early swim"
    assert all(o.applied for o in processor.process([listed("Evening swim", WHEN + timedelta(hours=2))]).outcomes)
    assert title() == "Evening swim"
