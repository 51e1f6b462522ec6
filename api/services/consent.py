"""Consent to statistics that can change, for the API and the web app alike (docs/design.md §5.7): who may record
a change, what a withdrawal deletes, and the history with its dates."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.models import Request
from api.publishing import publish
from api.services import audit, erasure
from ledger.events import AgeBand, ConsentChanged, SebGroup
from ledger.pg import schema
from ledger.pg.registry import is_current_member


class ConsentAnswer(Request):
    consent_stats: bool
    age_band: AgeBand | None = None
    seb: SebGroup | None = None


@dataclass(frozen=True, slots=True)
class Change:
    consent_stats: bool
    changed_at: datetime
    recorded_by: str


@dataclass(frozen=True, slots=True)
class Consent:
    volunteer_id: str
    consent_stats: bool
    age_band: str | None
    seb: str | None
    history: list[Change]  # oldest first


def may_record(conn: Connection, principal: Principal, volunteer_id: str) -> None:
    """The volunteer, an admin, or an organisation they are a current member of (recording their answer)."""
    if principal.role is Role.ADMIN or (principal.role is Role.VOLUNTEER and principal.volunteer_id == volunteer_id):
        return
    if principal.role is Role.VOLUNTEER:
        raise forbid("a volunteer changes their own consent only")
    if principal.role is Role.LEAD:
        raise forbid("a programme lead reads statistics, not one volunteer's consent")
    assert principal.org_id is not None
    if not is_current_member(conn, principal.org_id, volunteer_id):
        raise ApiError(403, "not_a_member", f"volunteer {volunteer_id} is not a member of {principal.org_id}: "
                                            "an organisation records its own members' consent only")


def _current(conn: Connection, volunteer_id: str, *, lock: bool = False) -> Consent:
    """With `lock`, the row stays locked to the end of the transaction: two changes at once are made one after
    the other, each with its own event."""
    v = schema.volunteers
    query = select(v.c.consent_stats, v.c.age_band, v.c.seb).where(v.c.id == volunteer_id)
    found = conn.execute(query.with_for_update() if lock else query).first()
    if found is None:
        raise ApiError(404, "unknown_volunteer", f"no volunteer {volunteer_id}")
    return Consent(volunteer_id, bool(found.consent_stats), found.age_band, found.seb, history(conn, volunteer_id))


def history(conn: Connection, volunteer_id: str) -> list[Change]:
    c = schema.consent_changes
    rows = conn.execute(select(c.c.consent_stats, c.c.changed_at, c.c.recorded_by)
                        .where(c.c.volunteer_id == volunteer_id).order_by(c.c.changed_at, c.c.id)).all()
    return [Change(row.consent_stats, row.changed_at, row.recorded_by) for row in rows]


def read(services: Services, principal: Principal, volunteer_id: str) -> Consent:
    with services.engine.connect() as conn:
        may_record(conn, principal, volunteer_id)
        return _current(conn, volunteer_id)


def add_to_history(conn: Connection, principal: Principal, volunteer_id: str, consent_stats: bool) -> None:
    """A row of the history: the answer given at sign-up, and each change after it."""
    conn.execute(insert(schema.consent_changes).values(volunteer_id=volunteer_id, consent_stats=consent_stats,
                                                       recorded_by=principal.actor, person_id=principal.person_id))


def change(services: Services, principal: Principal, volunteer_id: str, answer: ConsentAnswer) -> Consent:
    """Record the answer: the registry row, a history row and a `ConsentChanged` event, in one transaction.

    Withdrawing deletes the age group and background answers, which exist only to be counted; the free-text
    detail goes on any change (a new answer may no longer match it). The answers given replace those held; the
    same answers again change nothing. The history gains a row only when consent itself changes."""
    if not answer.consent_stats and (answer.age_band is not None or answer.seb is not None):
        raise ApiError(422, "answers_without_consent",
                       "age group and background are kept only with consent to statistics; leave them out")
    with services.engine.begin() as conn:
        may_record(conn, principal, volunteer_id)
        current = _current(conn, volunteer_id, lock=True)
        erasure.refuse_if_erased(conn, volunteer_id)
        if (current.consent_stats, current.age_band, current.seb) == (answer.consent_stats, answer.age_band,
                                                                      answer.seb):
            return current
        # The event first, then the row with the event's time, in this transaction: a worker that meets an older
        # consent event late leaves this answer alone (ledger/pg/registry.py:write_consents).
        sent = publish(services, principal, ConsentChanged(volunteer_id=volunteer_id,
                                                           consent_stats=answer.consent_stats,
                                                           age_band=answer.age_band, seb=answer.seb), conn)
        v = schema.volunteers
        conn.execute(update(v).where(v.c.id == volunteer_id).values(
            consent_stats=answer.consent_stats, age_band=answer.age_band, seb=answer.seb, seb_detail=None,
            consent_changed_at=sent.occurred_at, updated_at=func.now()))
        if current.consent_stats != answer.consent_stats:
            add_to_history(conn, principal, volunteer_id, answer.consent_stats)
        if principal.role is not Role.VOLUNTEER:  # recorded for them: an administrative act (docs/design.md §5.14)
            audit.record(conn, principal, "consent_recorded", f"volunteer:{volunteer_id}", event_id=sent.event_id,
                         consent_stats=answer.consent_stats)
        return _current(conn, volunteer_id)
