"""Waiting lists of full opportunities: joining, leaving, and the job that offers freed places in order
(docs/design.md §5.8).

The ledger is not touched here: an offer moves no credits. The worker's capacity rule (`ledger.intake.check_places`)
counts a live offer as a taken place for everyone but the volunteer it is made to, so the place is held for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert

from ledger.pg import schema
from ledger.pg.registry import open_bookings

#: The offer job's advisory lock: two runs never offer the same place twice.
_OFFER_LOCK = 7465636857616974
DEFAULT_OFFER_HOURS = 24


@dataclass(frozen=True, slots=True)
class Offer:
    opportunity_id: str
    volunteer_id: str
    offered_until: datetime


@dataclass(frozen=True, slots=True)
class OfferRun:
    """What one run of the job did: offers that lapsed (their volunteers left the list) and offers made."""

    lapsed: list[tuple[str, str]]
    offered: list[Offer]


def offer_places(engine: Engine, now: datetime, offer_hours: float = DEFAULT_OFFER_HOURS) -> OfferRun:
    """Lapse every offer whose time ran out by `now`, then offer each opportunity's free places to the first
    volunteers still waiting, for `offer_hours` from `now`. One transaction, under the job's lock."""
    w, op = schema.waitlist, schema.opportunities
    until = now + timedelta(hours=offer_hours)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OFFER_LOCK})
        lapsed = [(row[0], row[1]) for row in conn.execute(
            delete(w).where(w.c.offered_until <= now).returning(w.c.opportunity_id, w.c.volunteer_id))]
        # Locked as a booking batch locks them (ledger/pg/processing.py), so that no booking is applied between
        # the count of free places and the offers made for them.
        capacities = dict(conn.execute(
            select(op.c.id, op.c.capacity).where(op.c.capacity.is_not(None), op.c.id.in_(
                select(w.c.opportunity_id).where(w.c.offered_until.is_(None))))
            .order_by(op.c.id).with_for_update(key_share=True)).all())
        taken = open_bookings(conn, list(capacities))
        held = dict(conn.execute(select(w.c.opportunity_id, func.count())
                                 .where(w.c.opportunity_id.in_(list(capacities)), w.c.offered_until > now)
                                 .group_by(w.c.opportunity_id)).all()) if capacities else {}
        offered: list[Offer] = []
        for opportunity_id, capacity in sorted(capacities.items()):
            free = capacity - taken.get(opportunity_id, 0) - held.get(opportunity_id, 0)
            if free <= 0:
                continue
            first = conn.execute(select(w.c.volunteer_id).where(w.c.opportunity_id == opportunity_id,
                                                                w.c.offered_until.is_(None))
                                 .order_by(w.c.joined_at, w.c.volunteer_id).limit(free)).scalars().all()
            conn.execute(update(w).where(w.c.opportunity_id == opportunity_id, w.c.volunteer_id.in_(first))
                         .values(offered_at=now, offered_until=until))
            offered.extend(Offer(opportunity_id, volunteer_id, until) for volunteer_id in first)
    return OfferRun(lapsed, offered)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A volunteer's place on a waiting list: 1 is next; `offered_until` is set while a place is held for them."""

    opportunity_id: str
    volunteer_id: str
    position: int
    offered_until: datetime | None


def join(conn: Connection, opportunity_id: str, volunteer_id: str, now: datetime) -> bool:
    """Add the volunteer at the end of the list; False if they were on it already (nothing changes)."""
    w = schema.waitlist
    added = conn.execute(insert(w).values(opportunity_id=opportunity_id, volunteer_id=volunteer_id, joined_at=now)
                         .on_conflict_do_nothing().returning(w.c.volunteer_id)).first()
    return added is not None


def leave(conn: Connection, opportunity_id: str, volunteer_id: str) -> bool:
    """Take the volunteer off the list (and any offer with it); False if they were not on it."""
    w = schema.waitlist
    gone = conn.execute(delete(w).where(w.c.opportunity_id == opportunity_id, w.c.volunteer_id == volunteer_id)
                        .returning(w.c.volunteer_id)).first()
    return gone is not None


def places_of(conn: Connection, volunteer_id: str, opportunity_ids: list[str] | None = None) -> list[Waiting]:
    """The volunteer's places on waiting lists (of `opportunity_ids`, or all), each with its position: offers
    first (they are next by definition), then the waiting in order of joining."""
    w, ahead = schema.waitlist, schema.waitlist.alias("ahead")
    earlier = or_(ahead.c.joined_at < w.c.joined_at,
                  and_(ahead.c.joined_at == w.c.joined_at, ahead.c.volunteer_id < w.c.volunteer_id))
    # Ahead of a waiting volunteer: every live offer, and everyone waiting who joined before them.
    position = (select(func.count()).select_from(ahead)
                .where(ahead.c.opportunity_id == w.c.opportunity_id, ahead.c.volunteer_id != w.c.volunteer_id,
                       or_(ahead.c.offered_until.is_not(None), and_(ahead.c.offered_until.is_(None), earlier)))
                .scalar_subquery())
    query = select(w.c.opportunity_id, w.c.volunteer_id, w.c.offered_until, position).where(
        w.c.volunteer_id == volunteer_id).order_by(w.c.joined_at)
    if opportunity_ids is not None:
        query = query.where(w.c.opportunity_id.in_(opportunity_ids))
    rows = conn.execute(query).all()
    return [Waiting(row[0], row[1], 1 if row[2] is not None else int(row[3]) + 1, row[2]) for row in rows]
