"""Corrections with reasons, for the API, the web app and the CLI alike (docs/design.md §5.14): the ledger's own
rule checked on the committed ledger, the reason's words kept where they can be erased, the act audited."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal, Role
from api.deps import Services
from api.errors import ApiError
from api.intake import refuse_what_the_worker_would
from api.publishing import publish, reserve_event_id
from api.services import audit
from ledger.domain import ORG_CORRECTION_DAYS, EntryKind, Reason, RecordedEntry, Rejection, check_correction
from ledger.events import EntryReversed
from ledger.pg import schema
from ledger.pg.repository import recorded_entry

_STATUS = {
    Reason.UNKNOWN_ENTRY: 404,
    Reason.NOT_YOURS_TO_CORRECT: 403,
}


@dataclass(frozen=True, slots=True)
class Correction:
    event_id: UUID
    target_event_id: UUID
    reason_code: str
    reason: str
    requested_by: str
    requested_at: datetime


def correctable(services: Services, principal: Principal, target_event_id: UUID) -> RecordedEntry:
    """The entry `principal` may correct now, or the `ApiError` the worker's rule gives."""
    by_org = principal.org_id if principal.role is Role.ORG else None
    with services.engine.connect() as conn:
        found = recorded_entry(conn, target_event_id)
    try:
        return check_correction(found, target_event_id, by_org, datetime.now(UTC))
    except Rejection as refused:
        code = "forbidden" if refused.reason is Reason.NOT_YOURS_TO_CORRECT else refused.reason.value
        raise ApiError(_STATUS.get(Reason(refused.reason.value), 409), code, refused.message) from refused


def reverse(services: Services, principal: Principal, target_event_id: UUID, reason: str,
            reason_code: str = "other") -> UUID:
    """Ask the ledger to mirror `target_event_id`; the correction's event id. The reason's words, the event and
    the audit row are one transaction that commits only once the broker has the event."""
    target = correctable(services, principal, target_event_id)
    assert target.volunteer_id is not None  # every reversible kind is a volunteer's
    payload = EntryReversed(target_event_id=target_event_id, volunteer_id=target.volunteer_id,
                            reason_code=reason_code)  # type: ignore[arg-type]  # checked by the request model
    with services.engine.begin() as conn:
        refuse_what_the_worker_would(conn, principal, payload, services.policy)
        event_id = reserve_event_id()
        conn.execute(insert(schema.corrections).values(
            event_id=event_id, target_event_id=target_event_id, reason_code=reason_code, reason=reason,
            requested_by=audit.actor_of(principal)).on_conflict_do_nothing(index_elements=["event_id"]))
        publish(services, principal, payload, conn=conn)
        audit.record(conn, principal, "entry_correction_requested", f"entry:{target_event_id}", event_id=event_id,
                     reason_code=reason_code)
    return event_id


def reasons(services: Services, event_ids: list[UUID]) -> dict[UUID, Correction]:
    """The corrections among `event_ids`, by their event id (a statement's lines)."""
    if not event_ids:
        return {}
    c = schema.corrections
    with services.engine.connect() as conn:
        rows = conn.execute(select(c.c.event_id, c.c.target_event_id, c.c.reason_code, c.c.reason, c.c.requested_by,
                                   c.c.requested_at).where(c.c.event_id.in_(event_ids))).all()
    return {row.event_id: Correction(*row) for row in rows}


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval an organisation may still correct itself."""

    event_id: UUID
    volunteer_id: str
    name: str
    worked_on: date
    minutes: int
    amount: int
    approved_at: datetime


def recent_approvals(services: Services, org_id: str, volunteer_id: str | None = None,
                     limit: int = 200) -> list[Approval]:
    """The organisation's approvals of the last `ORG_CORRECTION_DAYS` days not corrected yet, newest first."""
    e, settled, d, logs = schema.entries, schema.entries.alias("settled"), schema.hours_decisions, schema.hours_logs
    profiles, postings = schema.volunteer_profiles, schema.postings
    since = datetime.now(UTC) - timedelta(days=ORG_CORRECTION_DAYS)
    query = (select(e.c.event_id, e.c.volunteer_id, profiles.c.display_name, logs.c.worked_on, logs.c.minutes,
                    postings.c.amount, e.c.occurred_at)
             .join(d, d.c.entry_id == e.c.id).join(logs, logs.c.event_id == d.c.log_event_id)
             .join(postings, (postings.c.entry_id == e.c.id)
                   & (postings.c.account_key == "volunteer:" + e.c.volunteer_id))
             .outerjoin(profiles, profiles.c.volunteer_id == e.c.volunteer_id)
             .where(e.c.kind == EntryKind.HOURS_APPROVED.value, e.c.org_id == org_id, e.c.occurred_at >= since,
                    ~exists().where(settled.c.related_entry_id == e.c.id))
             .order_by(e.c.occurred_at.desc()).limit(limit))
    if volunteer_id is not None:
        query = query.where(e.c.volunteer_id == volunteer_id)
    with services.engine.connect() as conn:
        return [Approval(row[0], row[1], row[2] or "(name erased)", *row[3:]) for row in conn.execute(query)]
