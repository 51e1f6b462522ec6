"""The hold-release job: bookings nobody attended or cancelled in time give their credits back (docs/design.md §5.11).

It reads the ledger and produces events; the ledger worker alone writes the ledger. A booking lapses once
`hold_hours` have passed since its session: the opportunity's start (opportunities have no end), or, for an
opportunity with no date, the booking itself. Each lapse is one `BookingExpired` whose event id is derived from
the booking's, so a second run, or a second scheduler, produces the same event again and the ledger (unique by
event id) applies it once.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from sqlalchemy import Connection, Engine, exists, func, select

from ledger.actors import HOLD_RELEASE_ACTOR
from ledger.domain import EntryKind
from ledger.events import BookingExpired
from ledger.pg import schema
from producers.kafka import EventProducer

DEFAULT_HOLD_HOURS = 72.0
_EXPIRY_NAMESPACE = uuid5(NAMESPACE_URL, "timecredits:booking-expired")


def expiry_event_id(booking_event_id: UUID) -> UUID:
    """The one event id a booking's lapse ever has."""
    return uuid5(_EXPIRY_NAMESPACE, str(booking_event_id))


def lapsed_bookings(conn: Connection, now: datetime, hold_hours: float = DEFAULT_HOLD_HOURS) -> list[tuple[UUID, str]]:
    """(booking event id, volunteer id) of every open booking whose hold ran out before `now`, oldest first."""
    e, settled, op = schema.entries, schema.entries.alias("settled"), schema.opportunities
    session = func.coalesce(op.c.starts_at, e.c.occurred_at)
    query = (select(e.c.event_id, e.c.volunteer_id)
             .select_from(e.outerjoin(op, op.c.id == e.c.opportunity_id))
             .where(e.c.kind == EntryKind.OPPORTUNITY_BOOKED.value,
                    ~exists().where(settled.c.related_entry_id == e.c.id),
                    session < now - timedelta(hours=hold_hours))
             .order_by(e.c.id))
    return [(row.event_id, row.volunteer_id) for row in conn.execute(query)]


def expire_holds(engine: Engine, producer: EventProducer, now: datetime,
                 hold_hours: float = DEFAULT_HOLD_HOURS) -> int:
    """Produce a `BookingExpired` for every booking lapsed by `now` and wait for the broker to acknowledge them
    all (`DeliveryError` otherwise). How many were produced."""
    with engine.connect() as conn:
        lapsed = lapsed_bookings(conn, now, hold_hours)
    for booking_event_id, volunteer_id in lapsed:
        producer.publish(BookingExpired(booking_event_id=booking_event_id, volunteer_id=volunteer_id),
                         actor=HOLD_RELEASE_ACTOR, event_id=expiry_event_id(booking_event_id), occurred_at=now)
    producer.flush()
    return len(lapsed)
