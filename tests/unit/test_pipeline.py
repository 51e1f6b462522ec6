"""The decide step of the batch pipeline, on in-memory state: no PostgreSQL, no Kafka.

`decide` is what every batch the worker applies goes through between loading its state and writing its result,
so each rule of the intake, the hours flow and the ledger shows here as it will in the ledger.
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest

from ledger.domain import EntryKind, Posting, RecordedEntry, Rejection
from ledger.events import (
    BookingAttended,
    CreditsGifted,
    CreditsRedeemed,
    DecodedEvent,
    EntryReversed,
    HoursApproved,
    HoursLogged,
    OpportunityBooked,
    MembershipEnded,
    MembershipStarted,
    OrganisationRegistered,
    Undecodable,
    VolunteerRegistered,
)
from ledger.hashing import GENESIS_HASH, entry_hash, link_hash
from ledger.intake import BatchRegistry, HoursLog, IntakePolicy, Opportunity, Organisation, SpendCode, check_payload
from ledger.pipeline import CHECKPOINT_EVERY, BatchState, EventOutcome, decide, needs_of
from tests.ledger_helpers import as_event

WHEN = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
AREA = "E09000030"


def ev(payload, event_id: UUID | None = None) -> DecodedEvent:  # type: ignore[no-untyped-def]
    return as_event(payload, event_id, WHEN)


def state(*, balances: dict[str, int] | None = None, decided: dict[UUID, EventOutcome] | None = None,
          entries: dict[UUID, RecordedEntry] | None = None, logs: dict[UUID, HoursLog] | None = None,
          heads: dict[str, tuple[int, bytes]] | None = None,
          members: set[tuple[str, str]] | None = None, spend_codes: dict[UUID, SpendCode] | None = None,
          used_codes: set[UUID] | None = None,
          day_minutes: dict[tuple[str, date], int] | None = None) -> BatchState:
    registry = BatchRegistry(
        {"ana", "ben"},
        {"garden": Organisation("garden", frozenset({"community"}), auto_approve=True),
         "food": Organisation("food", frozenset({"community"}), auto_approve=False),
         "lido": Organisation("lido", frozenset({"partner"}), auto_approve=False)},
        {"swim": Opportunity("swim", "lido", 100)},
        logs or {},
        set(),
        {(org, volunteer) for org in ("garden", "food") for volunteer in ("ana", "ben")} if members is None else members,
        spend_codes, used_codes, day_minutes,
    )
    known = dict(balances or {})
    for account in ("volunteer:ana", "holds:ana", "volunteer:ben", "holds:ben", "issuer:garden", "issuer:food",
                    "partner:lido", "issuer:lido", "partner:garden", "partner:food"):
        known.setdefault(account, 0)
    return BatchState(decided or {}, registry, entries or {}, {}, known, set(balances or {}), heads or {})


def run(items, s: BatchState | None = None, chains: list[str] | None = None,  # type: ignore[no-untyped-def]
        policy: IntakePolicy = IntakePolicy()):
    """As the loader would: every account the batch names is in the state, at 0 if it does not exist."""
    s = s or state()
    chains = chains or ["tc.activity/0"] * len(items)
    for account in needs_of(items, chains).accounts:
        s.balances.setdefault(account, 0)
    return decide(items, chains, s, WHEN, policy)


def hours(volunteer: str = "ana", org: str = "garden", minutes: int = 90) -> DecodedEvent:
    return ev(HoursLogged(volunteer_id=volunteer, org_id=org, date=date(2026, 11, 1), minutes=minutes))


def test_each_event_sees_what_the_earlier_ones_of_its_batch_did() -> None:
    decision = run([hours(), ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=150)),
                    ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=1))])
    outcomes = decision.outcomes({e.draft.event_id: n for n, e in enumerate(decision.entries, start=1)})
    assert [(o.status, o.reason) for o in outcomes] == [("applied", None), ("applied", None),
                                                         ("rejected", "insufficient_credits")]
    assert [e.draft.kind for e in decision.entries] == [EntryKind.HOURS_APPROVED, EntryKind.CREDITS_REDEEMED]
    assert [r.reason for r in decision.refusals] == ["insufficient_credits"]
    assert len(decision.hours_logs) == 1 and decision.decisions[0][0].reason == "auto_approve"


def test_hours_of_an_organisation_that_approves_later_earn_nothing_until_approved() -> None:
    logged = hours(org="food")
    first = run([logged])
    assert first.entries == [] and len(first.hours_logs) == 1 and first.decisions == []
    log = first.hours_logs[0]
    approval = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food"))
    second = run([approval, ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food"))],
                 state(logs={log.event_id: log}))
    outcomes = second.outcomes({second.entries[0].draft.event_id: 7})
    assert (outcomes[0].status, outcomes[0].entry_id) == ("applied", 7)
    assert (outcomes[1].status, outcomes[1].reason) == ("rejected", "already_decided")
    assert second.entries[0].draft.postings == (Posting("issuer:food", -150), Posting("volunteer:ana", 150))


def test_intake_refusals_are_decided_before_the_ledger_is_asked() -> None:
    decision = run([hours(volunteer="nobody"), hours(org="lido"),
                    ev(OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=99))])
    assert [o.reason for o in decision.outcomes({})] == ["unknown_volunteer", "not_a_community_organisation",
                                                       "opportunity_mismatch"]
    assert decision.entries == [] and decision.hours_logs == []


def test_registry_events_earlier_in_the_batch_are_known_to_later_ones() -> None:
    decision = run([
        ev(OrganisationRegistered(org_id="park", name="Park", area=AREA, kinds=frozenset({"community"}),
                                  auto_approve=True)),
        ev(VolunteerRegistered(volunteer_id="cai", area=AREA, consent_stats=False)),
        ev(MembershipStarted(membership_id=uuid4(), org_id="park", volunteer_id="cai")),
        hours(volunteer="cai", org="park"),
    ], state(balances={}), chains=["tc.admin/0", "tc.admin/1", "tc.admin/1", "tc.activity/0"])
    assert all(o.applied for o in decision.outcomes({decision.entries[0].draft.event_id: 1}))
    assert [u.table for u in decision.registry] == ["organisations", "volunteers", "memberships"]
    assert decision.new_accounts == ["issuer:park", "volunteer:cai"]


def test_a_repeat_is_a_duplicate_of_its_first_outcome_in_the_batch_or_before() -> None:
    earlier = uuid4()
    again = ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=5), event_id=earlier)
    logged = hours()
    decision = run([again, logged, logged], state(decided={
        earlier: EventOutcome(earlier, None, "rejected", reason="insufficient_credits", message="m")}))
    outcomes = decision.outcomes({logged.event_id: 3})
    assert (outcomes[0].reason, outcomes[0].duplicate, outcomes[0].type) == ("insufficient_credits", True,
                                                                             "CreditsRedeemed")
    assert (outcomes[1].entry_id, outcomes[1].duplicate) == (3, False)
    assert (outcomes[2].entry_id, outcomes[2].duplicate) == (3, True)
    assert len(decision.entries) == 1 and decision.refusals == []


def test_an_event_decided_before_with_an_entry_is_published_again() -> None:
    earlier = uuid4()
    decision = run([hours()], state(decided={earlier: EventOutcome(earlier, None, "applied", entry_id=41)}))
    assert decision.repeated_entry_ids == []
    decision = run([ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=5), event_id=earlier)],
                   state(decided={earlier: EventOutcome(earlier, None, "applied", entry_id=41)}))
    assert decision.repeated_entry_ids == [41] and decision.entries == []


def test_undecodable_items_are_refused_with_their_reason_and_recorded_when_they_have_an_id() -> None:
    with_id, without = uuid4(), Undecodable("invalid_json", "not JSON")
    decision = run([Undecodable("invalid_payload", "amount: must be positive", with_id, "CreditsRedeemed"), without])
    assert [(o.status, o.reason) for o in decision.outcomes({})] == [("rejected", "invalid_payload"),
                                                                    ("rejected", "invalid_json")]
    assert [r.event_id for r in decision.refusals] == [with_id]


def test_settling_and_reversing_use_the_entries_the_state_holds() -> None:
    booking = uuid4()
    stored = {booking: RecordedEntry(booking, EntryKind.OPPORTUNITY_BOOKED,
                                     (Posting("volunteer:ana", -100), Posting("holds:ana", 100)), "ana", "lido", "swim",
                                     closed=False)}
    decision = run([ev(BookingAttended(booking_event_id=booking, volunteer_id="ana")),
                    ev(EntryReversed(target_event_id=booking, volunteer_id="ana", reason="x"))],
                   state(balances={"holds:ana": 100}, entries=stored))
    assert [o.reason for o in decision.outcomes({decision.entries[0].draft.event_id: 1})] == [None, "booking_closed"]
    assert decision.entries[0].draft.postings == (Posting("holds:ana", -100), Posting("partner:lido", 100))


def test_entries_are_hashed_alone_and_linked_per_chain_after_each_chains_head() -> None:
    head = b"\x01" * 32
    items = [hours(), hours(volunteer="ben"), ev(CreditsGifted(from_volunteer_id="ana", to_volunteer_id="ben", amount=50))]
    decision = run(items, state(heads={"tc.activity/1": (CHECKPOINT_EVERY - 1, head)}),
                   chains=["tc.activity/0", "tc.activity/1", "tc.activity/0"])
    hashes = [e.hash for e in decision.entries]
    first = decision.entries[0].draft
    assert hashes[0] == entry_hash(prev_hash=None, event_id=first.event_id, kind=first.kind.value,
                                   occurred_at=first.occurred_at, recorded_at=WHEN, volunteer_id=first.volunteer_id,
                                   org_id=first.org_id, opportunity_id=first.opportunity_id,
                                   related_event_id=None, postings=first.postings)
    a, b = decision.links
    assert (a.chain_key, a.seq, a.prev_link, a.entry_count) == ("tc.activity/0", 1, GENESIS_HASH, 2)
    assert a.link == link_hash(chain_key="tc.activity/0", seq=1, prev_link=GENESIS_HASH,
                               entry_hashes=[hashes[0], hashes[2]])
    assert (b.chain_key, b.seq, b.prev_link, b.entry_count) == ("tc.activity/1", CHECKPOINT_EVERY, head, 1)
    assert [e.link_index for e in decision.entries] == [0, 1, 0]
    assert (a.checkpoint, b.checkpoint) == (False, True)


def test_a_batch_names_everything_its_rules_may_read() -> None:
    booking = uuid4()
    log = uuid4()
    needs = needs_of([hours(), ev(BookingAttended(booking_event_id=booking, volunteer_id="ben")),
                      ev(HoursApproved(log_event_id=log, volunteer_id="ana", org_id="food")),
                      Undecodable("invalid_json", "x")], ["a", "b", "a", "a"])
    assert needs.volunteer_ids == {"ana", "ben"} and needs.org_ids == {"garden", "food"}
    assert needs.referenced == {booking} and needs.log_ids == {log} and needs.chains == {"a", "b"}
    assert {"volunteer:ana", "holds:ben", "issuer:garden", "partner:food"} <= needs.accounts


def test_a_balance_the_state_does_not_hold_is_a_bug_not_a_zero() -> None:
    s = state()
    del s.balances["volunteer:ana"]
    try:
        decide([ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=5))], ["a"], s, WHEN)
    except LookupError as error:
        assert "volunteer:ana" in str(error)
    else:
        raise AssertionError("a missing balance must not be read as 0")


def test_an_organisation_logs_hours_only_for_its_current_members() -> None:
    decision = run([hours("ana", "garden"), hours("ben", "garden")], state(members={("garden", "ana")}))
    outcomes = decision.outcomes({e.draft.event_id: n for n, e in enumerate(decision.entries, start=1)})
    assert [(o.status, o.reason) for o in outcomes] == [("applied", None), ("rejected", "not_a_member")]
    assert [log.volunteer_id for log in decision.hours_logs] == ["ana"]
    assert [e.draft.volunteer_id for e in decision.entries] == ["ana"]


def test_a_membership_started_or_ended_earlier_in_the_batch_decides_the_hours_after_it() -> None:
    membership = uuid4()
    decision = run([
        hours("ben", "garden"),
        ev(MembershipStarted(membership_id=membership, org_id="garden", volunteer_id="ben")),
        hours("ben", "garden"),
        ev(MembershipEnded(membership_id=membership, org_id="garden", volunteer_id="ben")),
        hours("ben", "garden"),
    ], state(members=set()))
    outcomes = decision.outcomes({e.draft.event_id: n for n, e in enumerate(decision.entries, start=1)})
    assert [(o.status, o.reason) for o in outcomes] == [
        ("rejected", "not_a_member"), ("applied", None), ("applied", None), ("applied", None),
        ("rejected", "not_a_member")]
    assert [(u.table, "ended_at" in u.row) for u in decision.registry] == [("memberships", False),
                                                                           ("memberships", True)]


def test_hours_logged_while_a_member_are_approved_after_the_membership_ended() -> None:
    log_id = uuid4()
    log = HoursLog(log_id, "ana", "food", date(2026, 11, 1), 60, WHEN, "org:food")
    decision = run([ev(HoursApproved(log_event_id=log_id, volunteer_id="ana", org_id="food"))],
                   state(logs={log_id: log}, members=set()))
    outcomes = decision.outcomes({e.draft.event_id: n for n, e in enumerate(decision.entries, start=1)})
    assert [(o.status, o.reason) for o in outcomes] == [("applied", None)]
    assert decision.entries[0].draft.postings[-1] == Posting("volunteer:ana", 100)


def test_a_membership_of_an_unknown_volunteer_or_organisation_is_refused() -> None:
    decision = run([ev(MembershipStarted(membership_id=uuid4(), org_id="garden", volunteer_id="zed")),
                    ev(MembershipStarted(membership_id=uuid4(), org_id="nowhere", volunteer_id="ana"))])
    assert [r.reason for r in decision.refusals] == ["unknown_volunteer", "unknown_organisation"]
    assert decision.registry == []


# --- spending authorised by the volunteer, earning that cannot run away (docs/design.md §5.6) ----------------

CODE = UUID("00000000-0000-4000-8000-00000000c0de")


def _code(volunteer: str = "ana", partner: str = "lido", max_amount: int = 200,
          expires_at: datetime = WHEN.replace(hour=13)) -> dict[UUID, SpendCode]:
    return {CODE: SpendCode(CODE, volunteer, partner, max_amount, expires_at)}


def _by_partner(payload, **kwargs):  # type: ignore[no-untyped-def]
    return as_event(payload, None, WHEN, actor="org:lido", **kwargs)


def _funded(**kwargs) -> BatchState:  # type: ignore[no-untyped-def]
    return state(balances={"volunteer:ana": 500}, **kwargs)


def _reasons(decision) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [o.reason for o in decision.outcomes({e.draft.event_id: n for n, e in enumerate(decision.entries)})]


def test_a_partner_takes_no_credits_without_the_volunteers_code() -> None:
    decision = run([_by_partner(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=100)),
                    _by_partner(OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido",
                                                  amount=100))], _funded())
    assert _reasons(decision) == ["authorisation_required", "authorisation_required"]
    assert decision.entries == [] and decision.spend_code_uses == []


def test_a_spend_code_authorises_one_payment_and_is_used_up_by_it() -> None:
    first = _by_partner(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=150, spend_code_id=CODE))
    again = _by_partner(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=10, spend_code_id=CODE))
    decision = run([first, again], _funded(spend_codes=_code()))
    assert _reasons(decision) == [None, "code_used"]
    assert decision.spend_code_uses == [(CODE, first.event_id)]
    assert [e.draft.kind for e in decision.entries] == [EntryKind.CREDITS_REDEEMED]


def test_a_code_used_in_an_earlier_batch_is_refused() -> None:
    decision = run([_by_partner(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=1, spend_code_id=CODE))],
                   _funded(spend_codes=_code(), used_codes={CODE}))
    assert _reasons(decision) == ["code_used"]


def test_a_payment_the_ledger_refuses_does_not_use_up_the_code() -> None:
    poor = _by_partner(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=150, spend_code_id=CODE))
    decision = run([poor, hours(), _by_partner(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=150,
                                                               spend_code_id=CODE))],
                   state(spend_codes=_code()))
    assert _reasons(decision) == ["insufficient_credits", None, None]
    assert [use[0] for use in decision.spend_code_uses] == [CODE]


def test_a_code_binds_the_partner_the_volunteer_the_amount_and_the_time() -> None:
    def redeem(amount: int = 100, partner: str = "lido", volunteer: str = "ana", **at):  # type: ignore[no-untyped-def]
        return _by_partner(CreditsRedeemed(volunteer_id=volunteer, partner_id=partner, amount=amount,
                                           spend_code_id=CODE), **at)
    assert _reasons(run([redeem(201)], _funded(spend_codes=_code()))) == ["code_amount_exceeded"]
    assert _reasons(run([redeem(200)], _funded(spend_codes=_code()))) == [None]
    assert _reasons(run([redeem(volunteer="ben")], _funded(spend_codes=_code()))) == ["invalid_code"]
    assert _reasons(run([redeem()], _funded(spend_codes=_code(partner="garden")))) == ["invalid_code"]
    assert _reasons(run([redeem()], _funded())) == ["invalid_code"]
    assert _reasons(run([redeem()], _funded(spend_codes=_code(expires_at=WHEN.replace(hour=11))))) == ["code_expired"]


def test_a_partner_books_for_a_volunteer_with_their_code() -> None:
    booking = _by_partner(OpportunityBooked(volunteer_id="ana", opportunity_id="swim", partner_id="lido", amount=100,
                                            spend_code_id=CODE))
    decision = run([booking], _funded(spend_codes=_code()))
    assert _reasons(decision) == [None] and decision.spend_code_uses == [(CODE, booking.event_id)]


def test_the_volunteer_spends_and_gives_by_their_own_act_and_nobody_else_gives_for_them() -> None:
    own = [ev(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=100)),
           ev(CreditsGifted(from_volunteer_id="ana", to_volunteer_id="ben", amount=100))]
    assert _reasons(run(own, _funded())) == [None, None]
    others = [as_event(CreditsGifted(from_volunteer_id="ana", to_volunteer_id="ben", amount=100), None, WHEN,
                       actor=actor) for actor in ("volunteer:ben", "admin:bootstrap", "org:garden")]
    assert _reasons(run(others, _funded())) == ["authorisation_required"] * 3
    admin = as_event(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=100), None, WHEN,
                     actor="admin:bootstrap")
    assert _reasons(run([admin], _funded())) == ["authorisation_required"]


def test_no_more_than_24_approved_hours_a_day_across_organisations() -> None:
    decision = run([hours(minutes=900), hours(minutes=540), hours(minutes=1)],
                   state(day_minutes={("ana", date(2026, 11, 1)): 0}))
    assert _reasons(decision) == [None, None, "too_many_hours"]
    already = run([hours(minutes=61)], state(day_minutes={("ana", date(2026, 11, 1)): 1380}))
    assert _reasons(already) == ["too_many_hours"] and already.hours_logs == []
    assert "23 hours already approved" in already.refusals[0].message


def test_an_approval_past_24_hours_is_refused_and_the_log_stays_pending() -> None:
    logged = hours(org="food", minutes=120)
    log = run([logged]).hours_logs[0]
    approval = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food"))
    refused = run([approval], state(logs={log.event_id: log}, day_minutes={("ana", log.worked_on): 1380}))
    assert _reasons(refused) == ["too_many_hours"] and refused.decisions == []
    later = ev(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food"))
    assert _reasons(run([later], state(logs={log.event_id: log}, day_minutes={("ana", log.worked_on): 1320}))) == [None]


def test_hours_dated_too_long_ago_or_ahead_are_refused_unless_an_admin_logs_old_ones() -> None:
    def logged(day: date, actor: str = "org:garden") -> DecodedEvent:
        return as_event(HoursLogged(volunteer_id="ana", org_id="garden", date=day, minutes=60),
                        None, WHEN, actor=actor)
    policy = IntakePolicy(max_days_back=92)
    edge = WHEN.date().replace(month=8, day=2)  # 92 days before 2 November
    assert _reasons(run([logged(edge)], policy=policy)) == [None]
    old = edge.replace(day=1)
    assert _reasons(run([logged(old)], policy=policy)) == ["date_too_old"]
    assert _reasons(run([logged(old, actor="admin:bootstrap")], policy=policy)) == [None]
    assert _reasons(run([logged(old)], policy=IntakePolicy(max_days_back=365))) == [None]
    assert _reasons(run([logged(date(2026, 11, 3))], policy=policy)) == [None]  # a day's slack for time zones


def test_every_decision_records_who_made_it() -> None:
    auto = as_event(HoursLogged(volunteer_id="ana", org_id="garden", date=date(2026, 11, 1), minutes=60), None, WHEN, actor="org:garden")
    assert run([auto]).decisions[0][0].decided_by == "org:garden"
    logged = hours(org="food")
    log = run([logged]).hours_logs[0]
    approval = as_event(HoursApproved(log_event_id=logged.event_id, volunteer_id="ana", org_id="food"), None, WHEN,
                        actor="admin:t1")
    assert run([approval], state(logs={log.event_id: log})).decisions[0][0].decided_by == "admin:t1"


def test_a_batch_names_its_spend_codes_and_days() -> None:
    items = [hours(), _by_partner(CreditsRedeemed(volunteer_id="ana", partner_id="lido", amount=1, spend_code_id=CODE))]
    needs = needs_of(items, ["c"] * 2)
    assert needs.spend_codes == {CODE} and needs.days == {("ana", date(2026, 11, 1))}


def test_the_api_precheck_names_a_future_date_and_an_old_one() -> None:
    today = datetime.now(UTC).date()
    for day, reason in ((today.replace(year=today.year + 1), "date_in_future"),
                        (today.replace(year=today.year - 1), "date_too_old")):
        payload = HoursLogged(volunteer_id="ana", org_id="garden", date=day, minutes=60)
        with pytest.raises(Rejection) as refused:
            check_payload(payload, state().registry, actor="org:garden")
        assert refused.value.reason.value == reason
