"""The registry on PostgreSQL: organisations, volunteers and opportunities as the intake rules read and write them.

`StoredRegistry` answers the intake rules' questions (`ledger.intake.RegistryView`) straight from the tables, for
the API's pre-checks, so that a request is refused at once by the very rule the worker would apply later
(docs/design.md §2). `upsert_registry` writes a batch's registry changes.
"""
from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import Connection, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from ledger.domain import EntryKind
from ledger.intake import CONSENTS, MEMBERSHIPS, HoursLog, Opportunity, Organisation, RegistryUpsert, SpendCode
from ledger.pg import schema


class StoredRegistry:
    """A `RegistryView` over the committed registry, one small query a question."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def volunteer_exists(self, volunteer_id: str) -> bool:
        v = schema.volunteers
        return self._conn.execute(select(v.c.id).where(v.c.id == volunteer_id)).first() is not None

    def volunteer_erased(self, volunteer_id: str) -> bool:
        v = schema.volunteers
        return self._conn.execute(select(v.c.id).where(v.c.id == volunteer_id, v.c.erased_at.is_not(None))
                                  ).first() is not None

    def organisation(self, org_id: str) -> Organisation | None:
        o = schema.organisations
        row = self._conn.execute(select(o.c.id, o.c.kinds, o.c.auto_approve).where(o.c.id == org_id)).first()
        return Organisation(row.id, frozenset(row.kinds), row.auto_approve) if row else None

    def opportunity(self, opportunity_id: str) -> Opportunity | None:
        op = schema.opportunities
        row = self._conn.execute(select(op.c.id, op.c.partner_id, op.c.cost, op.c.capacity)
                                 .where(op.c.id == opportunity_id)).first()
        return Opportunity(row.id, row.partner_id, row.cost, row.capacity) if row else None

    def hours_log(self, event_id: UUID) -> HoursLog | None:
        logs = schema.hours_logs
        row = self._conn.execute(select(logs).where(logs.c.event_id == event_id)).first()
        if row is None:
            return None
        return HoursLog(row.event_id, row.volunteer_id, row.org_id, row.worked_on, row.minutes, row.logged_at,
                        row.actor)

    def is_decided(self, log_event_id: UUID) -> bool:
        d = schema.hours_decisions
        return self._conn.execute(select(d.c.log_event_id).where(d.c.log_event_id == log_event_id)).first() is not None

    def is_member(self, org_id: str, volunteer_id: str) -> bool:
        return is_current_member(self._conn, org_id, volunteer_id)

    def spend_code(self, code_id: UUID) -> SpendCode | None:
        c = schema.spend_codes
        row = self._conn.execute(select(c.c.id, c.c.volunteer_id, c.c.partner_id, c.c.max_amount, c.c.expires_at)
                                 .where(c.c.id == code_id)).first()
        return SpendCode(*row) if row else None

    def is_code_used(self, code_id: UUID) -> bool:
        u = schema.spend_code_uses
        return self._conn.execute(select(u.c.code_id).where(u.c.code_id == code_id)).first() is not None

    def approved_minutes(self, volunteer_id: str, day: date) -> int:
        logs, d = schema.hours_logs, schema.hours_decisions
        total = self._conn.execute(
            select(func.coalesce(func.sum(logs.c.minutes), 0))
            .join_from(logs, d, d.c.log_event_id == logs.c.event_id)
            .where(logs.c.volunteer_id == volunteer_id, logs.c.worked_on == day, d.c.decision == "approved")
        ).scalar_one()
        return int(total)

    def places_taken(self, opportunity_id: str, volunteer_id: str, at: datetime) -> int:
        return places_taken(self._conn, opportunity_id, volunteer_id, at)


def open_bookings(conn: Connection, opportunity_ids: list[str]) -> dict[str, int]:
    """Bookings of each opportunity that no entry settles yet (docs/design.md §5.8)."""
    if not opportunity_ids:
        return {}
    e, settled = schema.entries, schema.entries.alias("settled")
    query = (select(e.c.opportunity_id, func.count())
             .where(e.c.opportunity_id.in_(opportunity_ids), e.c.kind == EntryKind.OPPORTUNITY_BOOKED.value,
                    ~exists().where(settled.c.related_entry_id == e.c.id))
             .group_by(e.c.opportunity_id))
    return {row[0]: row[1] for row in conn.execute(query)}


def places_taken(conn: Connection, opportunity_id: str, volunteer_id: str, at: datetime) -> int:
    """Open bookings plus the offers live at `at` to volunteers other than `volunteer_id`, as the worker counts."""
    w = schema.waitlist
    offers = conn.execute(select(func.count()).where(
        w.c.opportunity_id == opportunity_id, w.c.volunteer_id != volunteer_id, w.c.offered_until > at)).scalar_one()
    return open_bookings(conn, [opportunity_id]).get(opportunity_id, 0) + int(offers)


def is_current_member(conn: Connection, org_id: str, volunteer_id: str) -> bool:
    m = schema.memberships
    return conn.execute(select(m.c.id).where(m.c.org_id == org_id, m.c.volunteer_id == volunteer_id,
                                             m.c.ended_at.is_(None))).first() is not None


class VolunteerDirectory:
    """Who a spreadsheet's `volunteer` cell names for one organisation: that organisation's own reference for a
    volunteer first, else a volunteer id (docs/design.md §5.4). One query for the references, one a distinct id."""

    def __init__(self, conn: Connection, org_id: str) -> None:
        r = schema.volunteer_references
        self._conn = conn
        self._references: dict[str, str] = dict(
            conn.execute(select(r.c.reference, r.c.volunteer_id).where(r.c.org_id == org_id)).all())
        self._ids: dict[str, bool] = {}

    def resolve(self, cell: str) -> str | None:
        if cell in self._references:
            return self._references[cell]
        if cell not in self._ids:
            v = schema.volunteers
            self._ids[cell] = self._conn.execute(select(v.c.id).where(v.c.id == cell)).first() is not None
        return cell if self._ids[cell] else None


_REGISTRY_TABLES = {
    "organisations": schema.organisations,
    "volunteers": schema.volunteers,
    "opportunities": schema.opportunities,
}


def upsert_registry(conn: Connection, upserts: list[RegistryUpsert]) -> None:
    """In order, a later event about the same entity winning: one statement a run of consecutive upserts of the
    same table and columns, rather than one a row. Within a run only an id's last row is written, as a statement
    may not update the same row twice; runs keep their order."""
    for table_name, rows in _runs(upserts):
        if table_name == MEMBERSHIPS:
            write_memberships(conn, rows)
            continue
        if table_name == CONSENTS:
            write_consents(conn, rows)
            continue
        table = _REGISTRY_TABLES[table_name]
        latest = list({row["id"]: row for row in rows}.values())
        statement = insert(table).values(latest)
        changes = {name: statement.excluded[name] for name in rows[0] if name != "id"}
        if "updated_at" in rows[0]:  # versioned by the event's time: only a newer one changes the row
            conn.execute(statement.on_conflict_do_update(index_elements=["id"], set_=changes,
                                                         where=table.c.updated_at <= statement.excluded.updated_at))
            continue
        conn.execute(statement.on_conflict_do_update(index_elements=["id"], set_={**changes, "updated_at": func.now()}))


def write_memberships(conn: Connection, rows: list[dict[str, object]]) -> None:
    """A run of membership starts or of ends (`_runs` keeps the two apart). A start already written (by the API,
    or by this event before) changes nothing; an end sets `ended_at` once (docs/design.md §5.4)."""
    m = schema.memberships
    if "ended_at" not in rows[0]:
        conn.execute(insert(m).values(rows).on_conflict_do_nothing())
        return
    ends = [{**row, "started_at": row["ended_at"]} for row in {row["id"]: row for row in rows}.values()]
    statement = insert(m).values(ends)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["id"],
        set_={"ended_at": func.coalesce(m.c.ended_at, statement.excluded.ended_at), "updated_at": func.now()}))


def write_consents(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Consent changes of registered volunteers, in order: the answers as given, and the free-text detail cleared,
    as the API does (docs/design.md §5.7). An update, as the row exists and an insert would need its area; and
    only by an event no older than the answer held, which the API may have written after this one."""
    v = schema.volunteers
    conn.execute(update(v).where(v.c.id == bindparam("volunteer"), or_(
        v.c.consent_changed_at.is_(None), v.c.consent_changed_at <= bindparam("at"))).values(
        consent_stats=bindparam("consent"), age_band=bindparam("age"), seb=bindparam("background"), seb_detail=None,
        consent_changed_at=bindparam("at"), updated_at=func.now()),
        [{"volunteer": r["id"], "consent": r["consent_stats"], "age": r["age_band"], "background": r["seb"],
          "at": r["changed_at"]} for r in rows])


def _runs(upserts: list[RegistryUpsert]) -> list[tuple[str, list[dict[str, object]]]]:
    """Consecutive upserts of one table with the same columns, grouped, in order."""
    runs: list[tuple[str, list[dict[str, object]]]] = []
    for upsert in upserts:
        if runs and runs[-1][0] == upsert.table and runs[-1][1][0].keys() == upsert.row.keys():
            runs[-1][1].append(upsert.row)
        else:
            runs.append((upsert.table, [upsert.row]))
    return runs
