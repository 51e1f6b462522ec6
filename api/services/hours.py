"""Hours logged and decided, for the API and the web app alike (docs/design.md §5.6, §8.2): each log and each
decision one event, checked at once by the worker's own intake rules."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from uuid import UUID

from sqlalchemy import select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.services.spending import publish_checked
from ledger.events import HoursApproved, HoursLogged, HoursRejected
from ledger.pg import schema


def log(services: Services, principal: Principal, volunteer_id: str, org_id: str, date: Date, minutes: int,
        activity: str, category: str = "other") -> UUID:
    """Hours earn nothing until approved, unless the organisation approves automatically."""
    if principal.role is Role.ORG and org_id != principal.org_id:
        raise forbid("an organisation logs hours for itself only")
    return publish_checked(services, principal, HoursLogged(
        volunteer_id=volunteer_id, org_id=org_id, date=date, minutes=minutes, activity=activity,
        category=category))


def decide(services: Services, principal: Principal, event_id: UUID, approve: bool, reason: str = "") -> UUID:
    """Approve or reject one log: one event each."""
    logs = schema.hours_logs
    with services.engine.connect() as conn:
        found = conn.execute(select(logs.c.volunteer_id, logs.c.org_id).where(logs.c.event_id == event_id)).first()
    if found is None:
        raise ApiError(404, "unknown_log", f"no hours logged as {event_id} (if just logged, wait until "
                                           f"GET /v1/events/{event_id} says applied)")
    if principal.role is Role.ORG and found.org_id != principal.org_id:
        raise forbid("an organisation decides its own volunteers' hours only")
    payload = (HoursApproved(log_event_id=event_id, volunteer_id=found.volunteer_id, org_id=found.org_id) if approve
               else HoursRejected(log_event_id=event_id, volunteer_id=found.volunteer_id, org_id=found.org_id,
                                  reason=reason))
    return publish_checked(services, principal, payload)


def decision(services: Services, log_event_id: UUID) -> str | None:
    """'approved' or 'rejected' once a log is decided, else None (waiting for approval)."""
    d = schema.hours_decisions
    with services.engine.connect() as conn:
        return conn.execute(select(d.c.decision).where(d.c.log_event_id == log_event_id)).scalar()


@dataclass(frozen=True, slots=True)
class PendingLog:
    event_id: UUID
    volunteer_id: str
    name: str
    reference: str | None
    worked_on: Date
    minutes: int
    activity: str
    logged_at: datetime


def pending(services: Services, org_id: str, limit: int = 500) -> list[PendingLog]:
    """The organisation's hours that are not decided yet, oldest work first."""
    logs, d = schema.hours_logs, schema.hours_decisions
    profiles, refs = schema.volunteer_profiles, schema.volunteer_references
    query = (select(logs.c.event_id, logs.c.volunteer_id, profiles.c.display_name, refs.c.reference, logs.c.worked_on,
                    logs.c.minutes, logs.c.activity, logs.c.logged_at)
             .outerjoin(d, d.c.log_event_id == logs.c.event_id)
             .outerjoin(profiles, profiles.c.volunteer_id == logs.c.volunteer_id)
             .outerjoin(refs, (refs.c.volunteer_id == logs.c.volunteer_id) & (refs.c.org_id == logs.c.org_id))
             .where(logs.c.org_id == org_id, d.c.log_event_id.is_(None))
             .order_by(logs.c.worked_on, logs.c.logged_at).limit(limit))
    with services.engine.connect() as conn:
        return [PendingLog(r[0], r[1], r[2] or "(name erased)", *r[3:]) for r in conn.execute(query)]
