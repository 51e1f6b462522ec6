"""The ledger's rules, free of any framework (docs/design.md §3).

A *command* is what an event asks of the ledger. `draft_entry` turns a command into an `EntryDraft`
(balanced postings) against a read-only `LedgerView`, or raises `Rejection` with a machine-readable
reason. Persistence, hashing and batching live elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from ledger.accounts import (
    NON_NEGATIVE_KINDS,
    AccountKind,
    holds_account,
    issuer_account,
    partner_account,
    split_account_key,
    volunteer_account,
)
from ledger.amounts import format_credits


class EntryKind(StrEnum):
    HOURS_APPROVED = "hours_approved"
    OPPORTUNITY_BOOKED = "opportunity_booked"
    BOOKING_CANCELLED = "booking_cancelled"
    BOOKING_ATTENDED = "booking_attended"
    BOOKING_EXPIRED = "booking_expired"
    BOOKING_NO_SHOW = "booking_no_show"
    CREDITS_REDEEMED = "credits_redeemed"
    CREDITS_GIFTED = "credits_gifted"
    ENTRY_REVERSED = "entry_reversed"


#: Kinds a reversal may undo. Settling a booking (cancel, attend, lapse, no-show) is final, and so is a reversal.
REVERSIBLE_KINDS = frozenset(
    {
        EntryKind.HOURS_APPROVED,
        EntryKind.OPPORTUNITY_BOOKED,
        EntryKind.CREDITS_REDEEMED,
        EntryKind.CREDITS_GIFTED,
    }
)


class Reason(StrEnum):
    """Why the ledger refused a command; these strings are part of the public contract."""

    INSUFFICIENT_CREDITS = "insufficient_credits"
    INVALID_AMOUNT = "invalid_amount"
    SAME_ACCOUNT = "same_account"
    UNKNOWN_ENTRY = "unknown_entry"
    NOT_A_BOOKING = "not_a_booking"
    BOOKING_CLOSED = "booking_closed"
    ALREADY_REVERSED = "already_reversed"
    NOT_REVERSIBLE = "not_reversible"
    NOT_YOURS_TO_CORRECT = "not_yours_to_correct"
    CORRECTION_WINDOW_CLOSED = "correction_window_closed"
    INVALID_ID = "invalid_id"
    WRONG_PARTNER = "wrong_partner"


class Rejection(Exception):
    """A command or event refused by the rules; `reason` is a contract code (`Reason`, `IntakeReason`)."""

    def __init__(self, reason: StrEnum, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: int


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EarnCredits:
    """Approved hours: the organisation issues credits to the volunteer."""

    event_id: UUID
    occurred_at: datetime
    volunteer_id: str
    org_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class BookOpportunity:
    """Hold credits for a partner's opportunity until it is attended or cancelled."""

    event_id: UUID
    occurred_at: datetime
    volunteer_id: str
    partner_id: str
    amount: int
    opportunity_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelBooking:
    event_id: UUID
    occurred_at: datetime
    booking_event_id: UUID


@dataclass(frozen=True, slots=True)
class AttendBooking:
    event_id: UUID
    occurred_at: datetime
    booking_event_id: UUID


@dataclass(frozen=True, slots=True)
class ExpireBooking:
    """A hold that lapsed (docs/design.md §5.11): the held credits go back to the volunteer."""

    event_id: UUID
    occurred_at: datetime
    booking_event_id: UUID


@dataclass(frozen=True, slots=True)
class MarkNoShow:
    """The volunteer did not come (docs/design.md §5.11): the held credits go to the partner when `forfeit`, else
    back to the volunteer. `partner_id` is the partner who says so, None for an admin, who may for any."""

    event_id: UUID
    occurred_at: datetime
    booking_event_id: UUID
    forfeit: bool
    partner_id: str | None = None


@dataclass(frozen=True, slots=True)
class RedeemCredits:
    """Spend credits directly with a partner."""

    event_id: UUID
    occurred_at: datetime
    volunteer_id: str
    partner_id: str
    amount: int
    opportunity_id: str | None = None


@dataclass(frozen=True, slots=True)
class GiftCredits:
    event_id: UUID
    occurred_at: datetime
    from_volunteer_id: str
    to_volunteer_id: str
    amount: int


#: How long an organisation may correct its own approvals; later, an admin's job (docs/design.md §5.14).
ORG_CORRECTION_DAYS = 30


@dataclass(frozen=True, slots=True)
class ReverseEntry:
    """Correct a mistake with the mirror of an earlier entry; each entry can be reversed once. `by_org` names the
    organisation that asks (None: an admin), which may correct only its own recent approvals."""

    event_id: UUID
    occurred_at: datetime
    target_event_id: UUID
    by_org: str | None = None


LedgerCommand = (
    EarnCredits
    | BookOpportunity
    | CancelBooking
    | AttendBooking
    | ExpireBooking
    | MarkNoShow
    | RedeemCredits
    | GiftCredits
    | ReverseEntry
)


# --- entries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry the ledger is about to record. `related_event_id` names the booking settled or entry reversed."""

    event_id: UUID
    kind: EntryKind
    occurred_at: datetime
    postings: tuple[Posting, ...]
    volunteer_id: str | None = None
    org_id: str | None = None
    opportunity_id: str | None = None
    related_event_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class RecordedEntry:
    """What the rules need to know about an entry already in the ledger."""

    event_id: UUID
    kind: EntryKind
    postings: tuple[Posting, ...]
    volunteer_id: str | None
    org_id: str | None
    opportunity_id: str | None
    closed: bool  # reversed, or (for a booking) settled: nothing may refer to it again
    occurred_at: datetime | None = None


class LedgerView(Protocol):
    def balance(self, account: str) -> int: ...

    def entry(self, event_id: UUID) -> RecordedEntry | None: ...


def draft_entry(command: LedgerCommand, view: LedgerView) -> EntryDraft:
    """The entry `command` makes, or `Rejection`. Checks every rule, overdraft included."""
    try:
        draft = _DRAFTERS[type(command)](command, view)
    except ValueError as exc:  # an id that cannot name an account
        raise Rejection(Reason.INVALID_ID, str(exc)) from exc
    _refuse_overdraft(draft, view)
    return draft


def _require_positive(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise Rejection(Reason.INVALID_AMOUNT, f"amount must be a positive whole number of hundredths, got {amount!r}")


def _transfer(source: str, target: str, amount: int) -> tuple[Posting, Posting]:
    _require_positive(amount)
    if source == target:
        raise Rejection(Reason.SAME_ACCOUNT, f"cannot move credits from {source} to itself")
    return Posting(source, -amount), Posting(target, amount)


def _earn(c: EarnCredits, _: LedgerView) -> EntryDraft:
    return EntryDraft(
        c.event_id,
        EntryKind.HOURS_APPROVED,
        c.occurred_at,
        _transfer(issuer_account(c.org_id), volunteer_account(c.volunteer_id), c.amount),
        volunteer_id=c.volunteer_id,
        org_id=c.org_id,
    )


def _book(c: BookOpportunity, _: LedgerView) -> EntryDraft:
    return EntryDraft(
        c.event_id,
        EntryKind.OPPORTUNITY_BOOKED,
        c.occurred_at,
        _transfer(volunteer_account(c.volunteer_id), holds_account(c.volunteer_id), c.amount),
        volunteer_id=c.volunteer_id,
        org_id=c.partner_id,
        opportunity_id=c.opportunity_id,
    )


def _open_booking(booking_event_id: UUID, view: LedgerView) -> RecordedEntry:
    booking = view.entry(booking_event_id)
    if booking is None:
        raise Rejection(Reason.UNKNOWN_ENTRY, f"no booking with event id {booking_event_id}")
    if booking.kind is not EntryKind.OPPORTUNITY_BOOKED:
        raise Rejection(Reason.NOT_A_BOOKING, f"entry {booking_event_id} is a {booking.kind.value}, not a booking")
    if booking.closed:
        raise Rejection(Reason.BOOKING_CLOSED, f"booking {booking_event_id} was already settled "
                                               f"(attended, cancelled, released, missed or reversed)")
    return booking


def _held_amount(booking: RecordedEntry) -> int:
    return next(p.amount for p in booking.postings if p.amount > 0)


Settlement = CancelBooking | AttendBooking | ExpireBooking | MarkNoShow


def _settle(c: Settlement, view: LedgerView) -> EntryDraft:
    """Release a booking's held credits: back to the volunteer (cancelled, lapsed, a no-show that costs nothing)
    or on to the partner (attended, a no-show that costs the booking)."""
    booking = _open_booking(c.booking_event_id, view)
    assert booking.volunteer_id is not None and booking.org_id is not None
    to_volunteer, to_partner = volunteer_account(booking.volunteer_id), partner_account(booking.org_id)
    if isinstance(c, CancelBooking):
        kind, receiver = EntryKind.BOOKING_CANCELLED, to_volunteer
    elif isinstance(c, AttendBooking):
        kind, receiver = EntryKind.BOOKING_ATTENDED, to_partner
    elif isinstance(c, ExpireBooking):
        kind, receiver = EntryKind.BOOKING_EXPIRED, to_volunteer
    else:
        if c.partner_id is not None and c.partner_id != booking.org_id:
            raise Rejection(Reason.WRONG_PARTNER,
                            f"booking {c.booking_event_id} is not of an opportunity of {c.partner_id}")
        kind, receiver = EntryKind.BOOKING_NO_SHOW, to_partner if c.forfeit else to_volunteer
    return EntryDraft(
        c.event_id,
        kind,
        c.occurred_at,
        _transfer(holds_account(booking.volunteer_id), receiver, _held_amount(booking)),
        volunteer_id=booking.volunteer_id,
        org_id=booking.org_id,
        opportunity_id=booking.opportunity_id,
        related_event_id=c.booking_event_id,
    )


def _redeem(c: RedeemCredits, _: LedgerView) -> EntryDraft:
    return EntryDraft(
        c.event_id,
        EntryKind.CREDITS_REDEEMED,
        c.occurred_at,
        _transfer(volunteer_account(c.volunteer_id), partner_account(c.partner_id), c.amount),
        volunteer_id=c.volunteer_id,
        org_id=c.partner_id,
        opportunity_id=c.opportunity_id,
    )


def _gift(c: GiftCredits, _: LedgerView) -> EntryDraft:
    return EntryDraft(
        c.event_id,
        EntryKind.CREDITS_GIFTED,
        c.occurred_at,
        _transfer(volunteer_account(c.from_volunteer_id), volunteer_account(c.to_volunteer_id), c.amount),
        volunteer_id=c.from_volunteer_id,
    )


def check_correction(target: RecordedEntry | None, target_event_id: UUID, by_org: str | None,
                     at: datetime) -> RecordedEntry:
    """The entry a correction asked at `at` may mirror, or `Rejection` (docs/design.md §5.14): it exists, can be
    reversed, is not reversed or settled yet, and, when an organisation asks, is its own approval of at most
    `ORG_CORRECTION_DAYS` before."""
    if target is None:
        raise Rejection(Reason.UNKNOWN_ENTRY, f"no entry with event id {target_event_id}")
    if target.kind not in REVERSIBLE_KINDS:
        raise Rejection(Reason.NOT_REVERSIBLE, f"a {target.kind.value} entry cannot be reversed")
    if by_org is not None:
        if target.kind is not EntryKind.HOURS_APPROVED or target.org_id != by_org:
            raise Rejection(Reason.NOT_YOURS_TO_CORRECT,
                            "an organisation corrects its own approvals of hours only; ask an admin")
        if target.occurred_at is not None and at - target.occurred_at > timedelta(days=ORG_CORRECTION_DAYS):
            raise Rejection(Reason.CORRECTION_WINDOW_CLOSED,
                            f"approvals can be corrected by the organisation for {ORG_CORRECTION_DAYS} days; "
                            "ask an admin")
    if target.closed:
        reason = Reason.BOOKING_CLOSED if target.kind is EntryKind.OPPORTUNITY_BOOKED else Reason.ALREADY_REVERSED
        raise Rejection(reason, f"entry {target_event_id} was already reversed or settled")
    return target


def _reverse(c: ReverseEntry, view: LedgerView) -> EntryDraft:
    target = check_correction(view.entry(c.target_event_id), c.target_event_id, c.by_org, c.occurred_at)
    return EntryDraft(
        c.event_id,
        EntryKind.ENTRY_REVERSED,
        c.occurred_at,
        mirror(target.postings),
        volunteer_id=target.volunteer_id,
        org_id=target.org_id,
        opportunity_id=target.opportunity_id,
        related_event_id=c.target_event_id,
    )


def mirror(postings: tuple[Posting, ...]) -> tuple[Posting, ...]:
    return tuple(Posting(p.account, -p.amount) for p in postings)


def _refuse_overdraft(draft: EntryDraft, view: LedgerView) -> None:
    for posting in draft.postings:
        if posting.amount >= 0:
            continue
        kind, owner = split_account_key(posting.account)
        if kind in NON_NEGATIVE_KINDS and view.balance(posting.account) + posting.amount < 0:
            raise Rejection(Reason.INSUFFICIENT_CREDITS,
                            _not_enough(kind, owner, view.balance(posting.account), -posting.amount))


def _not_enough(kind: AccountKind, owner: str, balance: int, needed: int) -> str:
    """In credits and words, as a person reads it on a page or in an event's outcome (docs/design.md §8.2)."""
    whose = {AccountKind.VOLUNTEER: f"volunteer {owner} has", AccountKind.HOLDS: f"volunteer {owner} has held",
             AccountKind.PARTNER: f"partner {owner} has taken"}.get(kind, f"{kind.value} {owner} has")
    return f"{whose} {format_credits(balance)} credits; this needs {format_credits(needed)}"


_DRAFTERS = {
    EarnCredits: _earn,
    BookOpportunity: _book,
    CancelBooking: _settle,
    AttendBooking: _settle,
    ExpireBooking: _settle,
    MarkNoShow: _settle,
    RedeemCredits: _redeem,
    GiftCredits: _gift,
    ReverseEntry: _reverse,
}
