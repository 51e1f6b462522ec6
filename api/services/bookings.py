"""Bookings after they are made, for the API and the web app alike (docs/design.md §5, §8.2, §5.11): who may
cancel one, confirm it or say the volunteer did not come (attended, the held credits go to the partner;
cancelled, back to the volunteer; missed, as the programme's no-show cost says; each one event, decided by the
worker), and which bookings are still open."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, exists, func, select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.publishing import publish
from ledger.accounts import holds_account
from ledger.domain import EntryKind
from ledger.events import BookingAttended, BookingCancelled, BookingNoShow
from ledger.pg import registry, schema


def booking(services: Services, event_id: UUID) -> Row[Any]:
    """The applied booking `event_id` (its volunteer, its partner, and whether an entry settled it), or 404."""
    e, settled = schema.entries, schema.entries.alias("settled")
    with services.engine.connect() as conn:
        found = conn.execute(select(e.c.volunteer_id, e.c.org_id,
                                    exists().where(settled.c.related_entry_id == e.c.id).label("closed")).where(
            e.c.event_id == event_id, e.c.kind == EntryKind.OPPORTUNITY_BOOKED.value)).first()
    if found is None:
        raise ApiError(404, "unknown_booking", f"no booking {event_id} (if just made, wait until "
                                               f"GET /v1/events/{event_id} says applied)")
    return found


def cancel(services: Services, principal: Principal, event_id: UUID) -> UUID:
    """The volunteer or the partner cancels; the held credits return to the volunteer. The event's id."""
    found = booking(services, event_id)
    if principal.role is Role.VOLUNTEER and principal.volunteer_id != found.volunteer_id:
        raise forbid("a volunteer cancels their own bookings only")
    if principal.role is Role.ORG and principal.org_id != found.org_id:
        raise forbid("an organisation cancels bookings of its own opportunities only")
    payload = BookingCancelled(booking_event_id=event_id, volunteer_id=found.volunteer_id)
    return publish(services, principal, payload).event_id


@dataclass(frozen=True, slots=True)
class OpenBooking:
    event_id: UUID
    opportunity_id: str
    title: str
    partner_name: str
    starts_at: datetime | None
    held: int


def _unsettled():  # type: ignore[no-untyped-def]
    """Booking entries not yet settled: no cancellation, attendance, lapse, no-show or reversal relates to them."""
    e, r = schema.entries, schema.entries.alias("settled")
    return (e.c.kind == EntryKind.OPPORTUNITY_BOOKED.value) & ~exists().where(r.c.related_entry_id == e.c.id)


def open_bookings(services: Services, volunteer_id: str) -> list[OpenBooking]:
    """The volunteer's bookings still holding credits, soonest first."""
    e, p, op, o = schema.entries, schema.postings, schema.opportunities, schema.organisations
    query = (
        select(e.c.event_id, op.c.id, op.c.title, o.c.name, op.c.starts_at, p.c.amount)
        .join(op, op.c.id == e.c.opportunity_id)
        .join(o, o.c.id == op.c.partner_id)
        .join(p, (p.c.entry_id == e.c.id) & (p.c.account_key == holds_account(volunteer_id)))
        .where(e.c.volunteer_id == volunteer_id, _unsettled())
        .order_by(op.c.starts_at.nulls_last(), e.c.id)
    )
    with services.engine.connect() as conn:
        return [OpenBooking(row[0], row[1], row[2], row[3], row[4], row[5]) for row in conn.execute(query)]


def open_counts(services: Services, opportunity_ids: list[str]) -> dict[str, int]:
    """How many open bookings each opportunity has: its capacity less these is the places left."""
    with services.engine.connect() as conn:
        return registry.open_bookings(conn, opportunity_ids)


def attend(services: Services, principal: Principal, event_id: UUID) -> UUID:
    """The partner (or an admin) confirms attendance; the held credits settle to the partner. The event's id."""
    found = booking(services, event_id)
    if principal.role not in (Role.ORG, Role.ADMIN):
        raise forbid("the partner confirms attendance")
    if principal.role is Role.ORG and principal.org_id != found.org_id:
        raise forbid("an organisation confirms attendance at its own opportunities only")
    payload = BookingAttended(booking_event_id=event_id, volunteer_id=found.volunteer_id)
    return publish(services, principal, payload).event_id


def no_show(services: Services, principal: Principal, event_id: UUID) -> UUID:
    """The partner (or an admin) says the volunteer did not come. The programme's no-show cost is applied here, once,
    and travels on the event (`forfeit`), so the worker and any replay decide the same (docs/design.md §5.11).
    A booking settled already is refused at once; two racing are told apart by the worker. The event's id."""
    found = booking(services, event_id)
    if principal.role not in (Role.ORG, Role.ADMIN):
        raise forbid("the partner says whether a volunteer came")
    if principal.role is Role.ORG and principal.org_id != found.org_id:
        raise forbid("an organisation marks no-shows at its own opportunities only")
    if found.closed:
        raise ApiError(409, "booking_closed", f"booking {event_id} was already settled "
                                              f"(attended, cancelled, released, missed or reversed)")
    payload = BookingNoShow(booking_event_id=event_id, volunteer_id=found.volunteer_id,
                            forfeit=services.no_show_forfeit)
    return publish(services, principal, payload).event_id


@dataclass(frozen=True, slots=True)
class PartnerBooking:
    event_id: UUID
    volunteer_id: str
    opportunity_id: str
    title: str
    starts_at: datetime | None
    held: int  # hundredths


def open_of_partner(services: Services, partner_id: str, limit: int = 500) -> list[PartnerBooking]:
    """A partner's bookings no entry settles yet (attended, cancelled, released, missed, reversed), soonest first."""
    e, settled, op, p = schema.entries, schema.entries.alias("settled"), schema.opportunities, schema.postings
    held = select(func.max(p.c.amount)).where(p.c.entry_id == e.c.id).scalar_subquery()
    query = (select(e.c.event_id, e.c.volunteer_id, e.c.opportunity_id, op.c.title, op.c.starts_at,
                    held.label("held"))
             .join(op, op.c.id == e.c.opportunity_id)
             .where(e.c.kind == EntryKind.OPPORTUNITY_BOOKED.value, e.c.org_id == partner_id,
                    ~select(settled.c.id).where(settled.c.related_entry_id == e.c.id).exists())
             .order_by(op.c.starts_at.nulls_last(), e.c.id).limit(limit))
    with services.engine.connect() as conn:
        return [PartnerBooking(r.event_id, r.volunteer_id, r.opportunity_id, r.title, r.starts_at, int(r.held or 0))
                for r in conn.execute(query)]
