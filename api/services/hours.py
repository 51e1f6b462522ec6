"""Hours logged and decided, for the API and the web app alike (docs/design.md §5.6, §8.2): each log and each
decision one event, checked at once by the worker's own intake rules; the approval queue, bulk decisions and
group logs are these same rules over many logs (§5.12)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.intake import refuse_what_the_worker_would
from api.publishing import publish, reserve_event_id
from api.services.outcomes import WAIT_S, wait_outcomes
from api.services.spending import publish_checked
from ledger.amounts import minutes_to_hundredths
from ledger.events import EventPayload, HoursApproved, HoursLogged, HoursRejected, OptionalText500, Text200, summarise
from ledger.pg import notes, schema


#: What a description and a reason may be: the rules the events applied while they carried the words.
_DESCRIPTION: TypeAdapter[str] = TypeAdapter(Text200)
_REASON: TypeAdapter[str] = TypeAdapter(OptionalText500)


def log(services: Services, principal: Principal, volunteer_id: str, org_id: str, date: Date, minutes: int,
        activity: str, category: str = "other") -> UUID:
    """Hours earn nothing until approved, unless the organisation approves automatically."""
    if principal.role is Role.ORG and org_id != principal.org_id:
        raise forbid("an organisation logs hours for itself only")
    try:
        activity = _DESCRIPTION.validate_python(activity)
    except ValidationError as invalid:
        raise ApiError(422, "invalid_request", f"activity: {summarise(invalid)}") from invalid
    return publish_with_note(services, principal, HoursLogged(
        volunteer_id=volunteer_id, org_id=org_id, date=date, minutes=minutes, category=category),
        notes.HOURS_ACTIVITY, activity)


def publish_with_note(services: Services, principal: Principal, payload: EventPayload, kind: notes.NoteKind,
                      text: str) -> UUID:
    """Refuse at once what the worker would, then keep `text` keyed by the event's id and publish the event, which
    carries no text (docs/design.md §5.16): one transaction that commits only once the broker has the event."""
    with services.engine.begin() as conn:
        refuse_what_the_worker_would(conn, principal, payload, services.policy)
        notes.write(conn, reserve_event_id(), kind, text)
        return publish(services, principal, payload, conn=conn).event_id


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
    if approve:
        return publish_checked(services, principal, HoursApproved(log_event_id=event_id,
                                                                  volunteer_id=found.volunteer_id,
                                                                  org_id=found.org_id))
    try:
        reason = _REASON.validate_python(reason)
    except ValidationError as invalid:
        raise ApiError(422, "invalid_request", f"reason: {summarise(invalid)}") from invalid
    return publish_with_note(services, principal, HoursRejected(
        log_event_id=event_id, volunteer_id=found.volunteer_id, org_id=found.org_id),
        notes.REJECTION_REASON, reason)


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
    """The organisation's hours that are not decided yet, oldest work first, with the volunteers' names: the
    queue's own query (`queue`), for a page that shows names."""
    logs, profiles = schema.hours_logs, schema.volunteer_profiles
    query = (_logs_query(org_id, LogFilter(status="pending"))
             .add_columns(profiles.c.display_name, logs.c.logged_at)
             .outerjoin(profiles, profiles.c.volunteer_id == logs.c.volunteer_id)
             .order_by(*_OLDEST_WORK_FIRST).limit(limit))
    with services.engine.connect() as conn:
        return [PendingLog(r.event_id, r.volunteer_id, r.display_name or "(name erased)", r.reference, r.worked_on,
                           r.minutes, r.activity, r.logged_at) for r in conn.execute(query)]


# --- the approval queue, bulk decisions and group logs (docs/design.md §5.12) -------------------------------------

#: A log's status in the queue: no decision yet, or the decision made.
STATUSES = ("pending", "approved", "rejected")
#: The most logs one bulk decision, or volunteers one group log, may name.
MAX_AT_ONCE = 500


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which logs a queue or an export shows: by status, one volunteer, and the days worked from / to."""

    status: str | None = None
    volunteer_id: str | None = None
    start: Date | None = None
    end: Date | None = None


@dataclass(frozen=True, slots=True)
class LoggedHours:
    event_id: UUID
    volunteer_id: str
    org_id: str
    reference: str | None
    worked_on: Date
    minutes: int
    credits: int  # hundredths the log earns once approved
    category: str
    status: str
    decided_at: datetime | None
    activity: str


@dataclass(frozen=True, slots=True)
class LogPage:
    items: list[LoggedHours]
    total: int
    page: int
    per_page: int


def logs_scope(principal: Principal, org_id: str | None) -> str | None:
    """The organisation whose logs `principal` may read (None: an admin reading every organisation's); 403 for an
    organisation asking about another's, and for anyone but organisations and admins."""
    if principal.role is Role.ORG:
        if org_id not in (None, principal.org_id):
            raise forbid("an organisation reads its own hours only")
        return principal.org_id
    if principal.role is Role.ADMIN:
        return org_id
    raise forbid("an organisation reads its own hours, an admin anyone's; a lead reads statistics")


def _logs_query(org_id: str | None, shown: LogFilter):  # type: ignore[no-untyped-def]
    logs, d, refs = schema.hours_logs, schema.hours_decisions, schema.volunteer_references
    status = func.coalesce(d.c.decision, "pending")
    query = (select(logs.c.event_id, logs.c.volunteer_id, logs.c.org_id, refs.c.reference, logs.c.worked_on,
                    logs.c.minutes, logs.c.category, status.label("status"), d.c.decided_at,
                    notes.activity_of(logs.c.event_id).label("activity"))
             .outerjoin(d, d.c.log_event_id == logs.c.event_id)
             .outerjoin(refs, (refs.c.volunteer_id == logs.c.volunteer_id) & (refs.c.org_id == logs.c.org_id)))
    if org_id is not None:
        query = query.where(logs.c.org_id == org_id)
    if shown.status == "pending":
        query = query.where(d.c.log_event_id.is_(None))
    elif shown.status is not None:
        query = query.where(d.c.decision == shown.status)
    if shown.volunteer_id is not None:
        query = query.where(logs.c.volunteer_id == shown.volunteer_id)
    if shown.start is not None:
        query = query.where(logs.c.worked_on >= shown.start)
    if shown.end is not None:
        query = query.where(logs.c.worked_on <= shown.end)
    return query


#: The queue's order: the day worked, then when logged, then the id (so that pages never overlap).
_OLDEST_WORK_FIRST = (schema.hours_logs.c.worked_on, schema.hours_logs.c.logged_at, schema.hours_logs.c.event_id)


def _logged(row: Any) -> LoggedHours:
    return LoggedHours(row.event_id, row.volunteer_id, row.org_id, row.reference, row.worked_on, row.minutes,
                       minutes_to_hundredths(row.minutes), row.category, row.status, row.decided_at, row.activity)


def _check_filter(shown: LogFilter) -> None:
    if shown.status is not None and shown.status not in STATUSES:
        raise ApiError(422, "invalid_status", f"status is one of {', '.join(STATUSES)}")
    if shown.start is not None and shown.end is not None and shown.end < shown.start:
        raise ApiError(422, "invalid_period", "`from` is after `to`")


def queue(services: Services, principal: Principal, org_id: str | None, shown: LogFilter, page: int = 1,
          per_page: int = 50) -> LogPage:
    """One page of the logs, oldest work first (offset paging, as the Open Referral feed pages)."""
    scope = logs_scope(principal, org_id)
    _check_filter(shown)
    query = _logs_query(scope, shown)
    with services.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(query.order_by(*_OLDEST_WORK_FIRST).limit(per_page)
                            .offset((page - 1) * per_page)).all()
    return LogPage([_logged(row) for row in rows], total, page, per_page)


def every_log(services: Services, principal: Principal, org_id: str, shown: LogFilter) -> list[LoggedHours]:
    """All the logs the filter keeps, oldest work first: what an export writes."""
    scope = logs_scope(principal, org_id)
    _check_filter(shown)
    with services.engine.connect() as conn:
        rows = conn.execute(_logs_query(scope, shown).order_by(*_OLDEST_WORK_FIRST)).all()
    return [_logged(row) for row in rows]


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """One log of a bulk decision: the event produced for it, or why none was (a refusal's code and message)."""

    log_event_id: UUID
    event_id: UUID | None = None
    code: str | None = None
    message: str | None = None


def _at_most(count: int, what: str) -> None:
    if count > MAX_AT_ONCE:
        raise ApiError(422, "too_many", f"at most {MAX_AT_ONCE} {what} at once, not {count}: send them in parts")


def decide_many(services: Services, principal: Principal, log_event_ids: Sequence[UUID], approve: bool,
                reason: str = "") -> list[DecisionOutcome]:
    """Approve or reject many logs: one event each through `decide`, each refusal reported, not raised; a log
    named twice is decided once."""
    wanted = list(dict.fromkeys(log_event_ids))
    _at_most(len(wanted), "logs")
    if not approve and not reason.strip():
        raise ApiError(422, "reason_required", "say why the hours are rejected: the volunteer may be told")
    outcomes = []
    for log_event_id in wanted:
        try:
            outcomes.append(DecisionOutcome(log_event_id, event_id=decide(services, principal, log_event_id, approve,
                                                                          reason.strip())))
        except ApiError as refused:
            outcomes.append(DecisionOutcome(log_event_id, code=refused.code, message=refused.message))
    return outcomes


#: What became of one volunteer's hours in a group log.
GROUP_OUTCOMES = ("refused", "waiting_for_approval", "approved_automatically", "approval_sent", "not_approved",
                  "log_pending")


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """One volunteer of a group log. `outcome` is one of `GROUP_OUTCOMES`: the log `refused` (at once or by the
    worker, with `code`); applied and `waiting_for_approval`; `approved_automatically` by the organisation; its
    approval produced (`approval_sent`, `approval_event_id` to follow); the approval refused (`not_approved`,
    with `code`); or the log not applied within the wait (`log_pending`), so not approved yet."""

    volunteer_id: str
    outcome: str
    log_event_id: UUID | None = None
    approval_event_id: UUID | None = None
    code: str | None = None
    message: str | None = None


def log_group(services: Services, principal: Principal, org_id: str, volunteer_ids: Sequence[str], date: Date,
              minutes: int, activity: str, category: str = "other", approve: bool = False,
              wait_s: float = WAIT_S) -> list[GroupOutcome]:
    """One activity for many volunteers: one `HoursLogged` each (each volunteer's own day counts) and, when
    `approve`, one `HoursApproved` each, produced once the worker applied its log."""
    wanted = list(dict.fromkeys(volunteer_ids))
    _at_most(len(wanted), "volunteers")
    if principal.role is Role.ORG and org_id != principal.org_id:
        raise forbid("an organisation logs hours for itself only")
    refused: dict[str, GroupOutcome] = {}
    logged: dict[str, UUID] = {}
    for volunteer_id in wanted:
        try:
            logged[volunteer_id] = log(services, principal, volunteer_id, org_id, date, minutes, activity, category)
        except ApiError as refusal:
            refused[volunteer_id] = GroupOutcome(volunteer_id, "refused", code=refusal.code, message=refusal.message)
        except ValueError as invalid:  # the event's own model refused a value
            refused[volunteer_id] = GroupOutcome(volunteer_id, "refused", code="invalid_request",
                                                 message=str(invalid)[:500])
    applied = wait_outcomes(services, list(logged.values()), wait_s) if logged else {}
    d = schema.hours_decisions
    with services.engine.connect() as conn:
        decided = set(conn.execute(select(d.c.log_event_id).where(
            d.c.log_event_id.in_(list(logged.values())), d.c.decision == "approved")).scalars()) if logged else set()
    outcomes = []
    for volunteer_id in wanted:
        if volunteer_id in refused:
            outcomes.append(refused[volunteer_id])
            continue
        event_id = logged[volunteer_id]
        status, why = applied[event_id]
        if status == "rejected":
            outcomes.append(GroupOutcome(volunteer_id, "refused", event_id, code=why, message=None))
        elif event_id in decided:
            outcomes.append(GroupOutcome(volunteer_id, "approved_automatically", event_id))
        elif status == "pending":
            outcomes.append(GroupOutcome(volunteer_id, "log_pending", event_id))
        elif not approve:
            outcomes.append(GroupOutcome(volunteer_id, "waiting_for_approval", event_id))
        else:
            try:
                outcomes.append(GroupOutcome(volunteer_id, "approval_sent", event_id,
                                             approval_event_id=decide(services, principal, event_id, True)))
            except ApiError as refusal:
                outcomes.append(GroupOutcome(volunteer_id, "not_approved", event_id, code=refusal.code,
                                             message=refusal.message))
    return outcomes
