"""The ledger's rules, in memory, without a database."""
from __future__ import annotations

import uuid

import pytest

from ledger.batch import BatchView
from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    EntryKind,
    ExpireBooking,
    GiftCredits,
    MarkNoShow,
    Posting,
    Reason,
    RedeemCredits,
    Rejection,
    ReverseEntry,
    draft_entry,
)
from tests.ledger_helpers import NOW


def _apply(view: BatchView, command):  # type: ignore[no-untyped-def]
    draft = draft_entry(command, view)
    view.accept(draft)
    return draft


def _refusal(view: BatchView, command) -> Reason:  # type: ignore[no-untyped-def]
    with pytest.raises(Rejection) as caught:
        draft_entry(command, view)
    return caught.value.reason


def test_each_entry_kind_has_the_postings_of_design_section_3() -> None:
    view = BatchView({}, {})
    booking = BookOpportunity(uuid.uuid4(), NOW, "v", "p", 100, "o")
    drafts = [
        _apply(view, EarnCredits(uuid.uuid4(), NOW, "v", "org", 1000)),
        _apply(view, booking),
        _apply(view, AttendBooking(uuid.uuid4(), NOW, booking.event_id)),
        _apply(view, RedeemCredits(uuid.uuid4(), NOW, "v", "p", 200)),
        _apply(view, GiftCredits(uuid.uuid4(), NOW, "v", "w", 300)),
    ]
    assert [(d.kind, d.postings) for d in drafts] == [
        (EntryKind.HOURS_APPROVED, (Posting("issuer:org", -1000), Posting("volunteer:v", 1000))),
        (EntryKind.OPPORTUNITY_BOOKED, (Posting("volunteer:v", -100), Posting("holds:v", 100))),
        (EntryKind.BOOKING_ATTENDED, (Posting("holds:v", -100), Posting("partner:p", 100))),
        (EntryKind.CREDITS_REDEEMED, (Posting("volunteer:v", -200), Posting("partner:p", 200))),
        (EntryKind.CREDITS_GIFTED, (Posting("volunteer:v", -300), Posting("volunteer:w", 300))),
    ]
    assert all(sum(p.amount for p in d.postings) == 0 for d in drafts)
    assert view.balance("volunteer:v") == 400


@pytest.mark.parametrize(("settle", "kind", "receiver"), [
    (lambda b: ExpireBooking(uuid.uuid4(), NOW, b), EntryKind.BOOKING_EXPIRED, "volunteer:v"),
    (lambda b: MarkNoShow(uuid.uuid4(), NOW, b, forfeit=False, partner_id="p"), EntryKind.BOOKING_NO_SHOW,
     "volunteer:v"),
    (lambda b: MarkNoShow(uuid.uuid4(), NOW, b, forfeit=True), EntryKind.BOOKING_NO_SHOW, "partner:p"),
], ids=["lapsed", "missed-costs-nothing", "missed-costs-the-booking"])
def test_a_lapse_or_a_no_show_settles_the_booking_once(settle, kind: EntryKind,  # type: ignore[no-untyped-def]
                                                       receiver: str) -> None:
    view = BatchView({"volunteer:v": 500}, {})
    booking = BookOpportunity(uuid.uuid4(), NOW, "v", "p", 200, "o")
    _apply(view, booking)
    draft = _apply(view, settle(booking.event_id))
    assert (draft.kind, draft.postings, draft.related_event_id) == (
        kind, (Posting("holds:v", -200), Posting(receiver, 200)), booking.event_id)
    for again in (settle(booking.event_id), CancelBooking(uuid.uuid4(), NOW, booking.event_id),
                  AttendBooking(uuid.uuid4(), NOW, booking.event_id)):
        assert _refusal(view, again) is Reason.BOOKING_CLOSED
    assert _refusal(view, ReverseEntry(uuid.uuid4(), NOW, draft.event_id)) is Reason.NOT_REVERSIBLE


def test_a_partner_says_no_show_only_of_its_own_bookings() -> None:
    view = BatchView({"volunteer:v": 500}, {})
    booking = BookOpportunity(uuid.uuid4(), NOW, "v", "p", 200, "o")
    _apply(view, booking)
    assert _refusal(view, MarkNoShow(uuid.uuid4(), NOW, booking.event_id, True, "other")) is Reason.WRONG_PARTNER
    assert view.balance("holds:v") == 200


def test_cancel_returns_held_credits_and_closes_the_booking() -> None:
    view = BatchView({"volunteer:v": 500}, {})
    booking = _apply(view, BookOpportunity(uuid.uuid4(), NOW, "v", "p", 120))
    cancel = _apply(view, CancelBooking(uuid.uuid4(), NOW, booking.event_id))
    assert cancel.postings == (Posting("holds:v", -120), Posting("volunteer:v", 120))
    assert cancel.related_event_id == booking.event_id
    assert _refusal(view, AttendBooking(uuid.uuid4(), NOW, booking.event_id)) is Reason.BOOKING_CLOSED


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (RedeemCredits(uuid.uuid4(), NOW, "v", "p", 101), Reason.INSUFFICIENT_CREDITS),
        (GiftCredits(uuid.uuid4(), NOW, "v", "w", 101), Reason.INSUFFICIENT_CREDITS),
        (BookOpportunity(uuid.uuid4(), NOW, "v", "p", 101), Reason.INSUFFICIENT_CREDITS),
        (GiftCredits(uuid.uuid4(), NOW, "v", "v", 1), Reason.SAME_ACCOUNT),
        (RedeemCredits(uuid.uuid4(), NOW, "v", "p", 0), Reason.INVALID_AMOUNT),
        (RedeemCredits(uuid.uuid4(), NOW, "v", "p", -5), Reason.INVALID_AMOUNT),
        (EarnCredits(uuid.uuid4(), NOW, "v", "org", True), Reason.INVALID_AMOUNT),
        (EarnCredits(uuid.uuid4(), NOW, "v:x", "org", 1), Reason.INVALID_ID),
        (CancelBooking(uuid.uuid4(), NOW, uuid.uuid4()), Reason.UNKNOWN_ENTRY),
        (ReverseEntry(uuid.uuid4(), NOW, uuid.uuid4()), Reason.UNKNOWN_ENTRY),
    ],
)
def test_refusals(command, reason: Reason) -> None:  # type: ignore[no-untyped-def]
    assert _refusal(BatchView({"volunteer:v": 100}, {}), command) is reason


def test_reversal_mirrors_once_and_never_reverses_a_reversal_or_a_settlement() -> None:
    view = BatchView({}, {})
    earn = _apply(view, EarnCredits(uuid.uuid4(), NOW, "v", "org", 300))
    reversal = _apply(view, ReverseEntry(uuid.uuid4(), NOW, earn.event_id))
    assert reversal.postings == (Posting("issuer:org", 300), Posting("volunteer:v", -300))
    assert _refusal(view, ReverseEntry(uuid.uuid4(), NOW, earn.event_id)) is Reason.ALREADY_REVERSED
    assert _refusal(view, ReverseEntry(uuid.uuid4(), NOW, reversal.event_id)) is Reason.NOT_REVERSIBLE
    assert _refusal(view, CancelBooking(uuid.uuid4(), NOW, earn.event_id)) is Reason.NOT_A_BOOKING


def test_reversal_that_would_overdraw_is_refused() -> None:
    view = BatchView({}, {})
    earn = _apply(view, EarnCredits(uuid.uuid4(), NOW, "v", "org", 300))
    _apply(view, RedeemCredits(uuid.uuid4(), NOW, "v", "p", 250))
    assert _refusal(view, ReverseEntry(uuid.uuid4(), NOW, earn.event_id)) is Reason.INSUFFICIENT_CREDITS


def test_a_refused_spend_says_what_is_there_and_what_is_needed_in_credits() -> None:
    """The message a person reads, on a page or in an event's outcome: credits, not hundredths."""
    from ledger.domain import _not_enough
    from ledger.accounts import AccountKind

    assert _not_enough(AccountKind.VOLUNTEER, "v-1", 200, 5000) == "volunteer v-1 has 2.00 credits; this needs 50.00"
    assert _not_enough(AccountKind.HOLDS, "v-1", 0, 150) == "volunteer v-1 has held 0.00 credits; this needs 1.50"


# --- corrections (docs/design.md §5.14) ----------------------------------------------------------------------------


def _approved_and_gifted(view: BatchView) -> tuple[uuid.UUID, uuid.UUID]:
    approval = _apply(view, EarnCredits(uuid.uuid4(), NOW, "v", "club", 1000))
    _apply(view, EarnCredits(uuid.uuid4(), NOW, "v", "garden", 500))
    gift = _apply(view, GiftCredits(uuid.uuid4(), NOW, "v", "w", 300))
    return approval.event_id, gift.event_id


def test_an_admin_corrects_any_reversible_entry_and_an_organisation_its_own_recent_approvals() -> None:
    from datetime import timedelta

    from ledger.domain import ORG_CORRECTION_DAYS

    view = BatchView({}, {})
    approval, gift = _approved_and_gifted(view)
    late = NOW + timedelta(days=ORG_CORRECTION_DAYS, seconds=1)
    assert _refusal(view, ReverseEntry(uuid.uuid4(), NOW, approval, by_org="other")) is Reason.NOT_YOURS_TO_CORRECT
    assert _refusal(view, ReverseEntry(uuid.uuid4(), NOW, gift, by_org="club")) is Reason.NOT_YOURS_TO_CORRECT
    assert _refusal(view, ReverseEntry(uuid.uuid4(), late, approval, by_org="club")) is Reason.CORRECTION_WINDOW_CLOSED
    on_the_last_day = NOW + timedelta(days=ORG_CORRECTION_DAYS)
    draft = _apply(view, ReverseEntry(uuid.uuid4(), on_the_last_day, approval, by_org="club"))
    assert draft.kind is EntryKind.ENTRY_REVERSED and draft.related_event_id == approval
    assert _refusal(view, ReverseEntry(uuid.uuid4(), NOW, approval)) is Reason.ALREADY_REVERSED
    assert _apply(view, ReverseEntry(uuid.uuid4(), late, gift)).related_event_id == gift  # an admin, any time
