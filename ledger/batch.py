"""An in-memory `LedgerView` that sees the drafts accepted earlier in the same batch."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from uuid import UUID

from ledger.domain import EntryDraft, RecordedEntry


class BatchView:
    """State loaded from storage for one batch, advanced by every accepted draft, in order.

    A balance the state does not hold is asked of `load_balance`; the batch pipeline loads every balance its
    rules may read up front, so there it raises instead (ledger/pipeline.py).
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
            occurred_at=draft.occurred_at,
        )
        if draft.related_event_id is not None:
            related = self._entries[draft.related_event_id]
            self._entries[draft.related_event_id] = replace(related, closed=True)
