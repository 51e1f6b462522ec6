"""The ledger's only write path: a batch of consumed events loaded, decided and written in one transaction.

This is what a worker calls for each batch it takes from Kafka, and what every test of the ledger drives
(docs/design.md §2, "One batch pipeline"): **load** the batch's state from PostgreSQL in one statement, **decide**
every event in memory (`ledger.pipeline.decide`, pure), **write** the result set-based. Every item gets an
outcome, in order: applied (with the entry it made, if any), or rejected with a reason code that is recorded in
`rejections` so `GET /v1/events/{id}` can tell it later. Items seen before get their first outcome back, marked
duplicate, and change nothing: delivery is at least once, the effect exactly once.

Should PostgreSQL still refuse a batch (the database has the last word on every invariant), the batch is run
again one item a transaction, and an item the database refuses on its own is recorded as rejected with the
database's reason. Should another writer have extended one of the batch's chains first (a partition that moved
to another worker), or a deadlock came between two writers, the batch is decided again on what is committed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Connection, Engine, Text, literal, null, select, text, union_all
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import Label

from ledger.accounts import split_account_key
from ledger.domain import EntryKind, Posting, RecordedEntry
from ledger.events import CommittedEntry
from ledger.intake import (
    DEFAULT_POLICY,
    BatchRegistry,
    HoursLog,
    IntakePolicy,
    Opportunity,
    Organisation,
    Places,
    SpendCode,
)
from ledger.pg import schema
from ledger.pg.bulk import array_literal, copy_rows, insert_rows_ignoring_conflicts
from ledger.pg.registry import upsert_registry
from ledger.pg.repository import UNKNOWN_CONSTRAINT, database_reason, is_write_conflict
from ledger.pg.schema import any_of
from ledger.pipeline import (
    DEFAULT_CHAIN,
    BatchDecision,
    BatchNeeds,
    BatchState,
    EventOutcome,
    Item,
    decide,
    needs_of,
)

__all__ = ["BatchResult", "EventOutcome", "EventProcessor", "count_decided", "event_outcomes", "event_status", "load_committed",
           "record_rejection", "run_batch"]

#: How often a batch is decided again when a concurrent writer got in its way (`is_write_conflict`).
CONFLICT_ATTEMPTS = 5


@dataclass
class BatchResult:
    outcomes: list[EventOutcome]
    committed: list[CommittedEntry] = field(default_factory=list)  # entries to publish on tc.ledger


class EventProcessor:
    def __init__(self, engine: Engine, policy: IntakePolicy = DEFAULT_POLICY) -> None:
        self._engine = engine
        self._policy = policy

    def process(self, items: Sequence[Item], chains: Sequence[str] | None = None) -> BatchResult:
        """One transaction for the batch; should PostgreSQL refuse it, one transaction an item instead.

        `chains[i]` names the hash chain the entry of `items[i]` extends: the worker passes the partition each
        record came from; without it every entry extends `DEFAULT_CHAIN`."""
        if not items:
            return BatchResult([])
        chain_keys = list(chains) if chains is not None else [DEFAULT_CHAIN] * len(items)
        if len(chain_keys) != len(items):
            raise ValueError("one chain key an item")
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                with self._engine.begin() as conn:
                    return run_batch(conn, items, chain_keys, self._policy)
            except DBAPIError as error:
                if is_write_conflict(error) and attempt + 1 < CONFLICT_ATTEMPTS:
                    continue  # decided again on what is committed now: what the other writer applied is a duplicate
                reason = database_reason(error)
                if reason is None:
                    raise
                if len(items) > 1:
                    results = [self.process([item], [chain]) for item, chain in zip(items, chain_keys)]
                    return BatchResult(
                        [o for r in results for o in r.outcomes], [c for r in results for c in r.committed]
                    )
                return BatchResult([self._record_refusal(items[0], reason, error)])
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _record_refusal(self, item: Item, reason: str, error: DBAPIError) -> EventOutcome:
        if reason == UNKNOWN_CONSTRAINT:
            # Not this event's fault (see UNKNOWN_CONSTRAINT): it stays undecided, and the worker stops without
            # committing the batch's offsets, so the batch is delivered again once the cause is fixed.
            decided = event_status(self._engine, item.event_id) if item.event_id is not None else None
            if decided is None:
                raise error
            return decided.as_duplicate(item.type)
        return record_rejection(self._engine, item, reason, str(error.orig).strip())


def record_rejection(engine: Engine, item: Item, reason: str, message: str) -> EventOutcome:
    """Record `item` as rejected, for a failure the consumer found it alone causes; an item decided meanwhile
    keeps its first outcome (returned, marked duplicate)."""
    with engine.begin() as conn:
        if item.event_id is not None:
            seen = _decided(conn, [item.event_id])
            if item.event_id in seen:
                return seen[item.event_id].as_duplicate(item.type)
            _write_refusals(conn, [(item.event_id, reason, message)], _now())
    return EventOutcome(item.event_id, item.type, "rejected", reason=reason, message=message)


def run_batch(conn: Connection, items: Sequence[Item], chains: Sequence[str],
              policy: IntakePolicy = DEFAULT_POLICY) -> BatchResult:
    """Load, decide and write one batch inside the caller's transaction."""
    state = load_state(conn, needs_of(items, chains))
    decision = decide(items, chains, state, _now(), policy)
    return write_decision(conn, decision)


def _now() -> datetime:
    return datetime.now(UTC)


# --- load ----------------------------------------------------------------------------------------------------

#: One statement for everything a batch's rules may read. Each branch of the UNION is one kind of row, told
#: apart by `tag`, in shared typed columns (NULL where a kind has no such value): one round trip a batch, and
#: every lookup an index probe by `= ANY(array)` (a subquery's rows too, gathered by ARRAY(...) first, so that
#: the planner cannot choose to hash a whole table to join them), so its cost follows the batch, not the ledger.
_LOAD_STATE = text("""
WITH refs AS (
    SELECT e.id, e.event_id, e.kind, e.volunteer_id, e.org_id, e.opportunity_id, e.occurred_at,
           EXISTS (SELECT 1 FROM entries r WHERE r.related_entry_id = e.id) AS closed
    FROM entries e WHERE e.event_id = ANY (CAST(:referenced AS uuid[]))
), ref_postings AS (
    SELECT p.entry_id, p.account_key, p.amount FROM postings p WHERE p.entry_id = ANY (ARRAY(SELECT id FROM refs))
), wanted AS (
    SELECT unnest(CAST(:accounts AS text[])) AS account_key
    UNION SELECT account_key FROM ref_postings
    UNION SELECT 'partner:' || org_id FROM refs WHERE org_id IS NOT NULL
    UNION SELECT 'volunteer:' || volunteer_id FROM refs WHERE volunteer_id IS NOT NULL
)
SELECT 0 AS tag, l.event_id AS u, NULL::text AS t1, NULL::text AS t2, NULL::text AS t3, NULL::text AS t4,
       NULL::bigint AS n1, NULL::bigint AS n2, NULL::date AS d, NULL::timestamptz AS ts, NULL::boolean AS flag,
       NULL::text[] AS arr, NULL::bytea AS bin
    FROM hours_logs l WHERE l.event_id = ANY (CAST(:event_ids AS uuid[]))
UNION ALL SELECT 1, d.decision_event_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM hours_decisions d WHERE d.decision_event_id = ANY (CAST(:event_ids AS uuid[]))
UNION ALL SELECT 2, e.event_id, NULL, NULL, NULL, NULL, e.id, NULL, NULL, NULL, NULL, NULL, NULL
    FROM entries e WHERE e.event_id = ANY (CAST(:event_ids AS uuid[]))
UNION ALL SELECT 3, r.event_id, r.reason, r.message, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM rejections r WHERE r.event_id = ANY (CAST(:event_ids AS uuid[]))
UNION ALL SELECT 4, NULL, v.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, v.erased_at IS NOT NULL, NULL, NULL
    FROM volunteers v WHERE v.id = ANY (CAST(:volunteers AS text[]))
UNION ALL SELECT 5, NULL, o.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, o.auto_approve, o.kinds, NULL
    FROM organisations o WHERE o.id = ANY (CAST(:orgs AS text[]))
UNION ALL SELECT 6, NULL, op.id, op.partner_id, NULL, NULL, op.cost, op.capacity, NULL, NULL, NULL, NULL, NULL
    FROM opportunities op WHERE op.id = ANY (CAST(:opportunities AS text[]))
UNION ALL SELECT 7, l.event_id, l.volunteer_id, l.org_id, NULL, l.actor, l.minutes, NULL, l.worked_on,
                 l.logged_at, NULL, NULL, NULL
    FROM hours_logs l WHERE l.event_id = ANY (CAST(:logs AS uuid[]))
UNION ALL SELECT 8, d.log_event_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM hours_decisions d WHERE d.log_event_id = ANY (CAST(:logs AS uuid[]))
UNION ALL SELECT 9, r.event_id, r.kind, r.volunteer_id, r.org_id, r.opportunity_id, r.id, NULL, NULL,
                 r.occurred_at, r.closed, NULL, NULL
    FROM refs r
UNION ALL SELECT 10, NULL, p.account_key, NULL, NULL, NULL, p.entry_id, p.amount, NULL, NULL, NULL, NULL, NULL
    FROM ref_postings p
UNION ALL SELECT 11, NULL, b.account_key, NULL, NULL, NULL, b.balance, NULL, NULL, NULL, NULL, NULL, NULL
    FROM balances b WHERE b.account_key = ANY (ARRAY(SELECT account_key FROM wanted))
UNION ALL SELECT 12, NULL, k.chain_key, NULL, NULL, NULL, h.seq, NULL, NULL, NULL, NULL, NULL, h.link
    FROM unnest(CAST(:chains AS text[])) AS k(chain_key)
    CROSS JOIN LATERAL (SELECT l.seq, l.link FROM chain_links l WHERE l.chain_key = k.chain_key
                        ORDER BY l.seq DESC LIMIT 1) h
UNION ALL SELECT 13, NULL, m.org_id, m.volunteer_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM memberships m
    WHERE m.volunteer_id = ANY (CAST(:volunteers AS text[])) AND m.ended_at IS NULL
      AND m.org_id = ANY (CAST(:orgs AS text[]))
UNION ALL SELECT 14, c.id, c.volunteer_id, c.partner_id, NULL, NULL, c.max_amount, NULL, NULL, c.expires_at,
                 EXISTS (SELECT 1 FROM spend_code_uses u WHERE u.code_id = c.id), NULL, NULL
    FROM spend_codes c WHERE c.id = ANY (CAST(:spend_codes AS uuid[]))
UNION ALL SELECT 15, NULL, p.volunteer_id, NULL, NULL, NULL, sum(l.minutes), NULL, p.worked_on, NULL, NULL, NULL,
                 NULL
    FROM (SELECT * FROM unnest(CAST(:day_volunteers AS text[]), CAST(:day_dates AS date[])) AS x(volunteer_id, worked_on)
          UNION SELECT l.volunteer_id, l.worked_on FROM hours_logs l WHERE l.event_id = ANY (CAST(:logs AS uuid[]))) p
    JOIN hours_logs l ON l.volunteer_id = p.volunteer_id AND l.worked_on = p.worked_on
    JOIN hours_decisions hd ON hd.log_event_id = l.event_id AND hd.decision = 'approved'
    GROUP BY p.volunteer_id, p.worked_on
UNION ALL SELECT 16, NULL, e.opportunity_id, NULL, NULL, NULL, count(*), NULL, NULL, NULL, NULL, NULL, NULL
    FROM entries e
    WHERE e.opportunity_id = ANY (ARRAY(SELECT op.id FROM opportunities op
                                        WHERE op.id = ANY (CAST(:opportunities AS text[])) AND op.capacity IS NOT NULL))
      AND e.kind = 'opportunity_booked'
      AND NOT EXISTS (SELECT 1 FROM entries r WHERE r.related_entry_id = e.id)
    GROUP BY e.opportunity_id
UNION ALL SELECT 17, NULL, w.opportunity_id, w.volunteer_id, NULL, NULL, NULL, NULL, NULL, w.offered_until, NULL,
                 NULL, NULL
    FROM waitlist w WHERE w.opportunity_id = ANY (CAST(:opportunities AS text[])) AND w.offered_until IS NOT NULL
""")


#: The opportunities with a capacity that a batch books, locked in id order until its commit: batches of other
#: workers (other partitions) that book the same opportunity, and the offer job, count its places after this one
#: has committed, never alongside it (docs/design.md §5.8). NO KEY: the waiting list's foreign key is not blocked.
_LOCK_PLACES = text("""
SELECT id FROM opportunities WHERE id = ANY (CAST(:ids AS text[])) AND capacity IS NOT NULL
ORDER BY id FOR NO KEY UPDATE
""")


def load_state(conn: Connection, needs: BatchNeeds) -> BatchState:
    """Everything `needs` names, as the store holds it now (one round trip, two for a batch that books)."""
    if needs.booked:
        # Before the load, in a statement of its own: the load's snapshot then includes what the batch that held
        # the lock before committed.
        conn.execute(_LOCK_PLACES, {"ids": array_literal(sorted(needs.booked))})
    days = sorted(needs.days)
    rows = conn.execute(_LOAD_STATE, {
        "event_ids": array_literal(needs.event_ids),
        "volunteers": array_literal(needs.volunteer_ids),
        "orgs": array_literal(needs.org_ids),
        "opportunities": array_literal(needs.opportunity_ids),
        "logs": array_literal(needs.log_ids),
        "referenced": array_literal(needs.referenced),
        "accounts": array_literal(needs.accounts),
        "chains": array_literal(needs.chains),
        "spend_codes": array_literal(needs.spend_codes),
        "day_volunteers": array_literal(volunteer for volunteer, _ in days),
        "day_dates": array_literal(day for _, day in days),
    }).all()
    # Where one event id is in several tables, the later source wins: a rejection over an entry over a decision.
    sources: dict[UUID, tuple[int, Any]] = {}
    volunteers: set[str] = set()
    erased: set[str] = set()
    organisations: dict[str, Organisation] = {}
    opportunities: dict[str, Opportunity] = {}
    logs: dict[UUID, HoursLog] = {}
    decided_logs: set[UUID] = set()
    referenced: dict[int, Any] = {}
    postings: dict[int, list[Posting]] = {}
    balances: dict[str, int] = {}
    heads: dict[str, tuple[int, bytes]] = {}
    members: set[tuple[str, str]] = set()
    spend_codes: dict[UUID, SpendCode] = {}
    used_codes: set[UUID] = set()
    day_minutes: dict[tuple[str, Any], int] = {}
    open_bookings: dict[str, int] = {}
    offers: dict[str, dict[str, datetime]] = {}
    for tag, u, t1, t2, t3, t4, n1, n2, d, ts, flag, arr, binary in rows:
        if tag <= 3:
            if u not in sources or sources[u][0] < tag:
                sources[u] = (tag, (n1, t1, t2))
        elif tag == 4:
            volunteers.add(t1)
            if flag:
                erased.add(t1)
        elif tag == 5:
            organisations[t1] = Organisation(t1, frozenset(arr), flag)
        elif tag == 6:
            opportunities[t1] = Opportunity(t1, t2, n1, n2)
        elif tag == 7:
            logs[u] = HoursLog(u, t1, t2, d, n1, ts, t4)
        elif tag == 8:
            decided_logs.add(u)
        elif tag == 9:
            referenced[n1] = (u, t1, t2, t3, t4, flag, ts)
        elif tag == 10:
            postings.setdefault(n1, []).append(Posting(t1, n2))
        elif tag == 11:
            balances[t1] = n1
        elif tag == 12:
            heads[t1] = (n1, bytes(binary))
        elif tag == 13:
            members.add((t1, t2))
        elif tag == 14:
            spend_codes[u] = SpendCode(u, t1, t2, n1, ts)
            if flag:
                used_codes.add(u)
        elif tag == 15:
            day_minutes[(t1, d)] = n1
        elif tag == 16:
            open_bookings[t1] = n1
        elif tag == 17:
            offers.setdefault(t1, {})[t2] = ts
    decided = {event_id: _outcome(event_id, tag, values) for event_id, (tag, values) in sources.items()}
    entries = {
        event_id: RecordedEntry(event_id, EntryKind(kind), tuple(postings.get(entry_id, ())), volunteer_id, org_id,
                                opportunity_id, closed, occurred_at)
        for entry_id, (event_id, kind, volunteer_id, org_id, opportunity_id, closed, occurred_at)
        in referenced.items()
    }
    entry_ids = {values[0]: entry_id for entry_id, values in referenced.items()}
    existing = set(balances)
    wanted = set(needs.accounts) | {p.account for ps in postings.values() for p in ps}
    wanted |= {f"partner:{v[3]}" for v in referenced.values() if v[3]}
    wanted |= {f"volunteer:{v[2]}" for v in referenced.values() if v[2]}
    for account in wanted:
        balances.setdefault(account, 0)
    registry = BatchRegistry(volunteers, organisations, opportunities, logs, decided_logs, members, spend_codes,
                             used_codes, day_minutes, Places(open_bookings, offers), erased)
    return BatchState(decided, registry, entries, entry_ids, balances, existing, heads)


def _outcome(event_id: UUID, tag: int, values: tuple[Any, Any, Any]) -> EventOutcome:
    """The outcome an event's row tells, by its source: 0 an hours log, 1 an hours decision, 2 an entry, 3 a
    rejection (`_LOAD_STATE`'s tags and `_decided`'s sources alike)."""
    entry_id, reason, message = values
    if tag == 0:
        return EventOutcome(event_id, "HoursLogged", "applied")
    if tag == 3:
        return EventOutcome(event_id, None, "rejected", reason=reason, message=message)
    return EventOutcome(event_id, None, "applied", entry_id=entry_id)


# --- write ---------------------------------------------------------------------------------------------------


def write_decision(conn: Connection, decision: BatchDecision) -> BatchResult:
    """The batch's write set, a statement a table, in the caller's transaction."""
    upsert_registry(conn, decision.registry)
    _insert_hours_logs(conn, decision.hours_logs)
    _write_refusals(conn, [(r.event_id, r.reason, r.message) for r in decision.refusals], decision.recorded_at)
    entry_ids = _write_entries(conn, decision)
    # A code's use is written with the payment it authorised; its primary key makes the code single use.
    copy_rows(conn, schema.spend_code_uses, [
        {"code_id": code_id, "event_id": event_id, "used_at": decision.recorded_at}
        for code_id, event_id in decision.spend_code_uses])
    _leave_waitlists(conn, decision.places_taken)
    committed = [_committed(entry_ids[sealed.draft.event_id], sealed) for sealed in decision.entries]
    # A batch delivered again after a crash may have committed before tc.ledger heard of it: say it again.
    return BatchResult(decision.outcomes(entry_ids), committed + load_committed(conn, decision.repeated_entry_ids))


def _leave_waitlists(conn: Connection, booked: Sequence[tuple[str, str]]) -> None:
    """A volunteer who booked an opportunity waits for it no longer: their row (and offer) goes (§5.8)."""
    if not booked:
        return
    conn.execute(text(
        "DELETE FROM waitlist w USING unnest(CAST(:opportunities AS text[]), CAST(:volunteers AS text[])) "
        "AS b(opportunity_id, volunteer_id) WHERE w.opportunity_id = b.opportunity_id "
        "AND w.volunteer_id = b.volunteer_id"),
        {"opportunities": array_literal(o for o, _ in booked), "volunteers": array_literal(v for _, v in booked)})


def _write_entries(conn: Connection, decision: BatchDecision) -> dict[UUID, int]:
    """Number the entries and links, then write accounts, entries, the hours decisions that name them, postings
    and links (in that order: the database checks an entry whole once its postings are in, and a link seals the
    entries written before it)."""
    if not decision.entries:
        _insert_decisions(conn, decision, {})
        return {}
    entry_ids, link_ids = conn.execute(
        text("SELECT array(SELECT nextval('entries_id_seq') FROM generate_series(1, :n)), "
             "array(SELECT nextval('chain_links_id_seq') FROM generate_series(1, :m))"),
        {"n": len(decision.entries), "m": len(decision.links)},
    ).one()
    entry_ids, link_ids = sorted(entry_ids), sorted(link_ids)
    ids = {sealed.draft.event_id: entry_id for sealed, entry_id in zip(decision.entries, entry_ids)}
    related = {**decision.referenced_entry_ids, **ids}
    recorded_at = decision.recorded_at
    entry_rows: list[dict[str, Any]] = []
    posting_rows: list[dict[str, Any]] = []
    for sealed, entry_id in zip(decision.entries, entry_ids):
        draft = sealed.draft
        entry_rows.append({
            "id": entry_id,
            "event_id": draft.event_id,
            "kind": draft.kind.value,
            "occurred_at": draft.occurred_at,
            "recorded_at": recorded_at,
            "volunteer_id": draft.volunteer_id,
            "org_id": draft.org_id,
            "opportunity_id": draft.opportunity_id,
            "related_entry_id": related[draft.related_event_id] if draft.related_event_id else None,
            "hash": sealed.hash,
            "link_id": link_ids[sealed.link_index],
        })
        posting_rows.extend({"entry_id": entry_id, "account_key": p.account, "amount": p.amount} for p in draft.postings)
    link_rows = [{"id": link_id, "chain_key": link.chain_key, "seq": link.seq, "prev_link": link.prev_link,
                  "link": link.link, "entry_count": link.entry_count, "recorded_at": recorded_at}
                 for link, link_id in zip(decision.links, link_ids)]
    checkpoints = [{"chain_key": link.chain_key, "seq": link.seq, "link": link.link, "taken_at": recorded_at}
                   for link in decision.links if link.checkpoint]
    insert_rows_ignoring_conflicts(conn, schema.accounts, [_account_row(key, recorded_at) for key in decision.new_accounts])
    copy_rows(conn, schema.entries, entry_rows)
    _insert_decisions(conn, decision, ids)
    # The postings last but for the links: their statement locks the balances it moves until the commit, and an
    # account that other partitions' batches move too (an organisation's) is then held for as short as can be.
    copy_rows(conn, schema.postings, posting_rows)
    copy_rows(conn, schema.chain_links, link_rows)
    copy_rows(conn, schema.chain_checkpoints, checkpoints)
    return ids


def _account_row(key: str, created_at: datetime) -> dict[str, object]:
    kind, owner = split_account_key(key)
    return {"key": key, "kind": kind.value, "owner_id": owner, "created_at": created_at}


def _committed(entry_id: int, sealed: Any) -> CommittedEntry:
    draft = sealed.draft
    return CommittedEntry(
        entry_id=entry_id,
        event_id=draft.event_id,
        kind=draft.kind.value,
        occurred_at=draft.occurred_at,
        volunteer_id=draft.volunteer_id,
        org_id=draft.org_id,
        opportunity_id=draft.opportunity_id,
        related_event_id=draft.related_event_id,
        postings=draft.postings,
    )


def _insert_hours_logs(conn: Connection, logs: list[HoursLog]) -> None:
    copy_rows(conn, schema.hours_logs, [
        {
            "event_id": log.event_id,
            "volunteer_id": log.volunteer_id,
            "org_id": log.org_id,
            "worked_on": log.worked_on,
            "minutes": log.minutes,
            "category": log.category,
            "logged_at": log.logged_at,
            "actor": log.actor,
        }
        for log in logs
    ])


def _insert_decisions(conn: Connection, decision: BatchDecision, entry_ids: dict[UUID, int]) -> None:
    copy_rows(conn, schema.hours_decisions, [
        {
            "log_event_id": hours.log_event_id,
            "decision_event_id": hours.decision_event_id,
            "decision": "approved" if hours.approved else "rejected",
            "reason": hours.reason,
            "entry_id": entry_ids[entry_event_id] if entry_event_id is not None else None,
            "decided_at": hours.decided_at,
            "decided_by": hours.decided_by,
        }
        for hours, entry_event_id in decision.decisions
    ])


def _write_refusals(conn: Connection, refusals: Sequence[tuple[UUID, str, str]], recorded_at: datetime) -> None:
    copy_rows(conn, schema.rejections, [
        {"event_id": event_id, "reason": reason, "message": message, "recorded_at": recorded_at}
        for event_id, reason, message in refusals
    ])


# --- reads of what became of events --------------------------------------------------------------------------


def _decided(conn: Connection, event_ids: Sequence[UUID]) -> dict[UUID, EventOutcome]:
    """Every event among `event_ids` that was processed before, with its outcome (one round trip)."""
    ids = list(set(event_ids))
    if not ids:
        return {}
    e, r, logs, d = schema.entries, schema.rejections, schema.hours_logs, schema.hours_decisions
    # Where one event id is in several tables, the later source wins: a rejection over an entry over a decision.
    sources = union_all(
        select(logs.c.event_id.label("event_id"), literal(0).label("source"), _null_as("entry_id", BigInteger),
               _null_as("reason", Text), _null_as("message", Text)).where(any_of(logs.c.event_id, ids)),
        select(d.c.decision_event_id, literal(1), _null_as("entry_id", BigInteger), _null_as("reason", Text),
               _null_as("message", Text)).where(any_of(d.c.decision_event_id, ids)),
        select(e.c.event_id, literal(2), e.c.id, _null_as("reason", Text), _null_as("message", Text))
        .where(any_of(e.c.event_id, ids)),
        select(r.c.event_id, literal(3), _null_as("entry_id", BigInteger), r.c.reason, r.c.message)
        .where(any_of(r.c.event_id, ids)),
    ).subquery()
    found: dict[UUID, EventOutcome] = {}
    for event_id, source, entry_id, reason, message in conn.execute(select(sources).order_by(sources.c.source)):
        found[event_id] = _outcome(event_id, source, (entry_id, reason, message))
    return found


def _null_as(name: str, type_: type[BigInteger] | type[Text]) -> Label[Any]:
    """A typed NULL column, for the sources of a UNION that lack it."""
    return null().cast(type_).label(name)


def count_decided(engine: Engine, event_ids: Sequence[UUID]) -> int:
    """How many of `event_ids` have been processed (applied or rejected): progress for loaders and tests."""
    with engine.connect() as conn:
        return len(_decided(conn, event_ids))


def event_outcomes(conn: Connection, event_ids: Sequence[UUID]) -> dict[UUID, EventOutcome]:
    """What became of each of `event_ids` that was processed (applied or rejected); pending ones are left out."""
    return _decided(conn, event_ids)


def event_status(engine: Engine, event_id: UUID) -> EventOutcome | None:
    """What became of an event, or None while it is pending (not processed yet)."""
    with engine.connect() as conn:
        return _decided(conn, [event_id]).get(event_id)


def load_committed(conn: Connection, entry_ids: Sequence[int]) -> list[CommittedEntry]:
    """Entries already in the ledger, as published on tc.ledger (to publish again after a crash)."""
    if not entry_ids:
        return []
    e, p = schema.entries, schema.postings
    related = schema.entries.alias("related")
    rows = conn.execute(
        select(e.c.id, e.c.event_id, e.c.kind, e.c.occurred_at, e.c.volunteer_id, e.c.org_id, e.c.opportunity_id,
               related.c.event_id)
        .outerjoin(related, related.c.id == e.c.related_entry_id)
        .where(any_of(e.c.id, list(entry_ids)))
        .order_by(e.c.id)
    ).all()
    postings: dict[int, list[Posting]] = {}
    for entry_id, account, amount in conn.execute(
        select(p.c.entry_id, p.c.account_key, p.c.amount).where(any_of(p.c.entry_id, list(entry_ids)))
    ):
        postings.setdefault(entry_id, []).append(Posting(account, amount))
    return [
        CommittedEntry(entry_id=r[0], event_id=r[1], kind=r[2], occurred_at=r[3], volunteer_id=r[4], org_id=r[5],
                       opportunity_id=r[6], related_event_id=r[7], postings=tuple(postings[r[0]]))
        for r in rows
    ]
