"""One batch of events, decided in memory: the middle step of the ledger's only write path (docs/design.md §2).

The worker (and every test of the ledger) runs each batch as three steps:

1. **load** (`ledger.pg.processing`): `needs_of(items)` names everything the batch's rules may read — events
   decided before, registry rows, hours logs, the entries that events settle or reverse, balances and chain
   heads — and it is read from PostgreSQL in one go into a `BatchState`;
2. **decide** (here, pure): `decide(items, chains, state)` runs the intake rules, the hours flow and the ledger's
   domain rules on that state, event by event, each event seeing what the earlier ones did; every item gets an
   outcome and the batch its write set: registry rows, hours logs and decisions, entry drafts hashed and linked
   per chain, and rejections;
3. **write** (`ledger.pg.processing`): the write set, set-based, in the transaction that loaded the state.

Nothing here touches a database, so the decide step is tested with in-memory state (tests/unit/test_pipeline.py).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID

from ledger.accounts import holds_account, issuer_account, partner_account, volunteer_account
from ledger.batch import BatchView
from ledger.domain import EntryDraft, EntryKind, RecordedEntry, Rejection, draft_entry
from ledger.events import DecodedEvent, OpportunityBooked, Undecodable
from ledger.hashing import GENESIS_HASH, entry_hash, link_hash
from ledger.intake import (
    DEFAULT_POLICY,
    BatchRegistry,
    HoursDecision,
    HoursLog,
    IntakePolicy,
    RegistryUpsert,
    plan_event,
)

Item = DecodedEvent | Undecodable

#: The chain of entries written without a partition to name one (the CLI, tests).
DEFAULT_CHAIN = "default"
#: Every so many links of a chain, its head is copied to `chain_checkpoints`.
CHECKPOINT_EVERY = 100


@dataclass(frozen=True, slots=True)
class EventOutcome:
    event_id: UUID | None
    type: str | None
    status: str  # "applied" | "rejected"
    entry_id: int | None = None
    reason: str | None = None
    message: str | None = None
    duplicate: bool = False

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    def as_duplicate(self, type: str | None = None) -> EventOutcome:
        """The same outcome told again, for a repeat of the event (whose type the store may not have kept)."""
        return EventOutcome(self.event_id, type or self.type, self.status, self.entry_id, self.reason, self.message,
                            duplicate=True)


@dataclass(frozen=True, slots=True)
class BatchNeeds:
    """What a batch's rules may read, named from the items alone."""

    event_ids: frozenset[UUID]
    volunteer_ids: frozenset[str]
    org_ids: frozenset[str]
    opportunity_ids: frozenset[str]
    log_ids: frozenset[UUID]
    #: Events whose entries the batch settles or reverses; their postings' accounts are loaded too.
    referenced: frozenset[UUID]
    #: Accounts the payloads name; the loader adds those of the referenced entries.
    accounts: frozenset[str]
    chains: frozenset[str]
    #: Spend codes the payloads carry.
    spend_codes: frozenset[UUID] = frozenset()
    #: (volunteer_id, day) of hours logged in the batch; the loader adds the days of `log_ids`.
    days: frozenset[tuple[str, date]] = frozenset()
    #: Opportunities the batch books: those with a capacity are locked before their places are counted (§5.8).
    booked: frozenset[str] = frozenset()


def needs_of(items: Sequence[Item], chains: Sequence[str]) -> BatchNeeds:
    event_ids: set[UUID] = set()
    volunteers: set[str] = set()
    orgs: set[str] = set()
    opportunities: set[str] = set()
    logs: set[UUID] = set()
    referenced: set[UUID] = set()
    accounts: set[str] = set()
    codes: set[UUID] = set()
    days: set[tuple[str, date]] = set()
    booked: set[str] = set()
    for item in items:
        if item.event_id is not None:
            event_ids.add(item.event_id)
        if not isinstance(item, DecodedEvent):
            continue
        # A payload's fields by name from its __dict__: pydantic answers getattr of a field a model lacks by raising
        # inside its own __getattr__, which costs more than all the rest of this loop.
        fields = item.payload.__dict__
        for name in ("volunteer_id", "from_volunteer_id", "to_volunteer_id"):
            value = fields.get(name)
            if isinstance(value, str):
                volunteers.add(value)
                accounts.add(volunteer_account(value))
                accounts.add(holds_account(value))
        for name in ("org_id", "partner_id"):
            value = fields.get(name)
            if isinstance(value, str):
                orgs.add(value)
                accounts.add(issuer_account(value))
                accounts.add(partner_account(value))
        value = fields.get("opportunity_id")
        if isinstance(value, str):
            opportunities.add(value)
            if isinstance(item.payload, OpportunityBooked):
                booked.add(value)
        value = fields.get("log_event_id")
        if isinstance(value, UUID):
            logs.add(value)
        value = fields.get("spend_code_id")
        if isinstance(value, UUID):
            codes.add(value)
        value = fields.get("date")
        if isinstance(value, date) and isinstance(fields.get("volunteer_id"), str):
            days.add((fields["volunteer_id"], value))
        for name in ("booking_event_id", "target_event_id"):
            value = fields.get(name)
            if isinstance(value, UUID):
                referenced.add(value)
    return BatchNeeds(frozenset(event_ids), frozenset(volunteers), frozenset(orgs), frozenset(opportunities),
                      frozenset(logs), frozenset(referenced), frozenset(accounts), frozenset(chains),
                      frozenset(codes), frozenset(days), frozenset(booked))


@dataclass
class BatchState:
    """What the store holds of a batch's needs, as of the batch's transaction."""

    #: Events processed before, with their first outcome.
    decided: dict[UUID, EventOutcome]
    registry: BatchRegistry
    #: Entries named by `BatchNeeds.referenced`, by event id, with whether anything refers to them already.
    entries: dict[UUID, RecordedEntry]
    entry_ids: dict[UUID, int]
    #: Balances of every account needed, 0 for one that does not exist yet.
    balances: dict[str, int]
    #: The accounts among them that exist.
    accounts: set[str]
    #: The newest link of each chain needed, as (seq, link); a chain missing here has none yet.
    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SealedEntry:
    """An entry draft with its hash, its chain and the place of its link among the batch's links."""

    draft: EntryDraft
    hash: bytes
    link_index: int


@dataclass(frozen=True, slots=True)
class NewLink:
    chain_key: str
    seq: int
    prev_link: bytes
    link: bytes
    entry_count: int

    @property
    def checkpoint(self) -> bool:
        return self.seq % CHECKPOINT_EVERY == 0


@dataclass(frozen=True, slots=True)
class Refusal:
    event_id: UUID
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class _Applied:
    """An item applied in this batch: its entry (if any) gets its id when written."""

    event_id: UUID
    type: str
    entry_event_id: UUID | None


@dataclass(frozen=True, slots=True)
class _RepeatOf:
    index: int


_Slot = EventOutcome | _Applied | _RepeatOf


@dataclass
class BatchDecision:
    """Every item's fate and what the batch writes, in order."""

    slots: list[_Slot]
    registry: list[RegistryUpsert]
    hours_logs: list[HoursLog]
    #: Approvals and rejections of hours, each with the event id of the entry it made (None for a rejection).
    decisions: list[tuple[HoursDecision, UUID | None]]
    entries: list[SealedEntry]
    links: list[NewLink]
    refusals: list[Refusal]
    recorded_at: datetime
    #: Accounts the entries post to that the store does not hold yet.
    new_accounts: list[str]
    #: Entries of events decided before, to publish again (a batch delivered again after a crash).
    repeated_entry_ids: list[int]
    #: Ids of the stored entries that the batch settles or reverses, by event id.
    referenced_entry_ids: dict[UUID, int]
    #: Spend codes used up by the batch's payments, as (code id, event id).
    spend_code_uses: list[tuple[UUID, UUID]] = field(default_factory=list)
    #: (opportunity_id, volunteer_id) of the bookings of limited places applied: off that waiting list.
    places_taken: list[tuple[str, str]] = field(default_factory=list)

    def outcomes(self, entry_ids: Mapping[UUID, int]) -> list[EventOutcome]:
        """Each item's outcome, once the entries are numbered (`entry_ids` by event id)."""
        outcomes: list[EventOutcome] = []
        for slot in self.slots:
            if isinstance(slot, _RepeatOf):
                outcomes.append(outcomes[slot.index].as_duplicate())
            elif isinstance(slot, _Applied):
                entry_id = entry_ids[slot.entry_event_id] if slot.entry_event_id is not None else None
                outcomes.append(EventOutcome(slot.event_id, slot.type, "applied", entry_id=entry_id))
            else:
                outcomes.append(slot)
        return outcomes


def decide(items: Sequence[Item], chains: Sequence[str], state: BatchState, recorded_at: datetime,
           policy: IntakePolicy = DEFAULT_POLICY) -> BatchDecision:
    """Decide every item in order against `state`, each seeing the effects of those before it.

    Items decided before get their first outcome back, marked duplicate; an event id seen earlier in the same
    batch is a duplicate of that item. `chains[i]` is the hash chain item i's entry extends.
    """
    registry = state.registry
    view = BatchView(state.balances, state.entries, _missing_balance)
    slots: list[_Slot] = []
    seen: dict[UUID, int] = {}
    refusals: list[Refusal] = []
    upserts: list[RegistryUpsert] = []
    logs: list[HoursLog] = []
    decisions: list[tuple[HoursDecision, UUID | None]] = []
    drafts: list[tuple[EntryDraft, str]] = []
    code_uses: list[tuple[UUID, UUID]] = []
    places_taken: list[tuple[str, str]] = []
    for item, chain in zip(items, chains, strict=True):
        event_id = item.event_id
        if event_id is not None and event_id in state.decided:
            slots.append(state.decided[event_id].as_duplicate(item.type))
            continue
        if event_id is not None and event_id in seen:
            slots.append(_RepeatOf(seen[event_id]))
            continue
        if event_id is not None:
            seen[event_id] = len(slots)
        if isinstance(item, Undecodable):
            if event_id is not None:
                refusals.append(Refusal(event_id, item.reason, item.detail))
            slots.append(EventOutcome(event_id, item.type, "rejected", reason=item.reason, message=item.detail))
            continue
        try:
            plan = plan_event(item, registry, policy)
        except Rejection as refused:
            slots.append(_refuse(item, refused, refusals))
            continue
        draft = None
        if plan.command is not None:
            try:
                draft = draft_entry(plan.command, view)
            except Rejection as refused:
                slots.append(_refuse(item, refused, refusals))
                continue
            view.accept(draft)
            drafts.append((draft, chain))
            _free_place(draft, view, registry)
        # Only now is the plan applied: what it changes is seen by the events after it.
        registry.accept(plan)
        upserts.extend(plan.registry)
        if plan.hours_log is not None:
            logs.append(plan.hours_log)
        if plan.decision is not None:
            decisions.append((plan.decision, draft.event_id if draft is not None else None))
        if plan.spend_code_id is not None:
            code_uses.append((plan.spend_code_id, item.event_id))
        if plan.takes_place is not None:
            places_taken.append(plan.takes_place)
        slots.append(_Applied(item.event_id, item.type, draft.event_id if draft is not None else None))

    entries, links = seal(drafts, state.heads, recorded_at)
    posted = sorted({posting.account for entry in entries for posting in entry.draft.postings})
    repeated = sorted({slot.entry_id for slot in slots
                       if isinstance(slot, EventOutcome) and slot.duplicate and slot.entry_id is not None})
    return BatchDecision(slots, upserts, logs, decisions, entries, links, refusals, recorded_at,
                         [account for account in posted if account not in state.accounts], repeated,
                         state.entry_ids, code_uses, places_taken)


def _free_place(draft: EntryDraft, view: BatchView, registry: BatchRegistry) -> None:
    """An entry that settles a booking (of any kind: cancelled, attended, reversed, lapsed) frees its place for
    the events after it (docs/design.md §5.8)."""
    if draft.related_event_id is None:
        return
    settled = view.entry(draft.related_event_id)
    if settled is not None and settled.kind is EntryKind.OPPORTUNITY_BOOKED and settled.opportunity_id:
        registry.places.free(settled.opportunity_id)


def _refuse(item: DecodedEvent, refused: Rejection, refusals: list[Refusal]) -> EventOutcome:
    refusals.append(Refusal(item.event_id, refused.reason.value, refused.message))
    return EventOutcome(item.event_id, item.type, "rejected", reason=refused.reason.value, message=refused.message)


def _missing_balance(account: str) -> int:
    """Every account a batch's rules read is loaded with it (`needs_of`) or created by the batch itself."""
    raise LookupError(f"the batch's state does not hold the balance of {account}: needs_of() missed it")


def seal(drafts: Iterable[tuple[EntryDraft, str]], heads: Mapping[str, tuple[int, bytes]],
         recorded_at: datetime) -> tuple[list[SealedEntry], list[NewLink]]:
    """Hash each draft and link each chain's drafts, in batch order, after that chain's head."""
    by_chain: dict[str, list[int]] = {}
    entries: list[SealedEntry] = []
    hashes: list[bytes] = []
    chain_index: dict[str, int] = {}
    for draft, chain in drafts:
        digest = entry_hash(
            prev_hash=None,
            event_id=draft.event_id,
            kind=draft.kind.value,
            occurred_at=draft.occurred_at,
            recorded_at=recorded_at,
            volunteer_id=draft.volunteer_id,
            org_id=draft.org_id,
            opportunity_id=draft.opportunity_id,
            related_event_id=draft.related_event_id,
            postings=draft.postings,
        )
        index = chain_index.setdefault(chain, len(chain_index))
        by_chain.setdefault(chain, []).append(len(entries))
        entries.append(SealedEntry(draft, digest, index))
        hashes.append(digest)
    links = []
    for chain, members in by_chain.items():
        seq, prev_link = heads.get(chain, (0, GENESIS_HASH))
        covered = [hashes[i] for i in members]
        links.append(NewLink(chain, seq + 1, prev_link,
                             link_hash(chain_key=chain, seq=seq + 1, prev_link=prev_link, entry_hashes=covered),
                             len(covered)))
    return entries, links
