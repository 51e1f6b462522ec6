"""An in-memory `LedgerView` that sees the drafts accepted earlier in the same batch."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from uuid import UUID

from ledger.accounts import holds_account, issuer_account, partner_account, volunteer_account
from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    EntryDraft,
    GiftCredits,
    LedgerCommand,
    RecordedEntry,
    RedeemCredits,
    ReverseEntry,
)


class BatchView:
    """State loaded from storage for one batch, advanced by every accepted draft, in order.

    Balances the batch did not prefetch are fetched one at a time through `load_balance`.
    """

    def __init__(
        self,
        balances: dict[str, int],
        entries: dict[UUID, RecordedEntry],
        load_balance: Callable[[str], int] = lambda account: 0,
    ) -> None:
        self._balances = dict(balances)
        self._entries = dict(entries)
        self._load_balance = load_balance

    def balance(self, account: str) -> int:
        if account not in self._balances:
            self._balances[account] = self._load_balance(account)
        return self._balances[account]

    def entry(self, event_id: UUID) -> RecordedEntry | None:
        return self._entries.get(event_id)

    def accept(self, draft: EntryDraft) -> None:
        for posting in draft.postings:
            self._balances[posting.account] = self.balance(posting.account) + posting.amount
        self._entries[draft.event_id] = RecordedEntry(
            event_id=draft.event_id,
            kind=draft.kind,
            postings=draft.postings,
            volunteer_id=draft.volunteer_id,
            org_id=draft.org_id,
            opportunity_id=draft.opportunity_id,
            closed=False,
        )
        if draft.related_event_id is not None:
            related = self._entries[draft.related_event_id]
            self._entries[draft.related_event_id] = replace(related, closed=True)


def referenced_event_ids(commands: Iterable[LedgerCommand]) -> set[UUID]:
    """Event ids of the entries that commands in a batch settle or reverse."""
    refs: set[UUID] = set()
    for command in commands:
        if isinstance(command, CancelBooking | AttendBooking):
            refs.add(command.booking_event_id)
        elif isinstance(command, ReverseEntry):
            refs.add(command.target_event_id)
    return refs


def accounts_to_prefetch(commands: Iterable[LedgerCommand], referenced: Iterable[RecordedEntry]) -> set[str]:
    """Accounts whose balances a batch will most likely read, so they can be loaded in one query."""
    accounts: set[str] = set()
    for command in commands:
        try:
            accounts |= _accounts_named_by(command)
        except ValueError:
            continue  # an invalid id: the command will be rejected when drafted
    for entry in referenced:
        accounts |= {posting.account for posting in entry.postings}
        if entry.volunteer_id:
            accounts.add(volunteer_account(entry.volunteer_id))
        if entry.org_id:
            accounts.add(partner_account(entry.org_id))
    return accounts


def _accounts_named_by(command: LedgerCommand) -> set[str]:
    match command:
        case EarnCredits():
            return {issuer_account(command.org_id), volunteer_account(command.volunteer_id)}
        case BookOpportunity():
            return {
                volunteer_account(command.volunteer_id),
                holds_account(command.volunteer_id),
                partner_account(command.partner_id),
            }
        case RedeemCredits():
            return {volunteer_account(command.volunteer_id), partner_account(command.partner_id)}
        case GiftCredits():
            return {volunteer_account(command.from_volunteer_id), volunteer_account(command.to_volunteer_id)}
    return set()
