"""Everything timecredits holds about one volunteer (UK GDPR Art. 15), for the volunteer and admins, as JSON and
as a bundle of CSV files (docs/design.md §5.7). One query a section; secrets (token, code and session digests)
and other people's data are left out, and the statistics facts, a copy of the ledger's entries, too."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from api.auth import Principal, Role
from api.deps import forbid
from api.errors import ApiError
from api.models import credits
from api.services import consent
from api.spreadsheet_cells import inert
from ledger.accounts import holds_account, volunteer_account
from ledger.pg import notes, schema

Section = list[dict[str, Any]]

#: The bundle's files, in the order the README lists them, with what each holds.
SECTIONS: dict[str, str] = {
    "profile": "who you are to the programme: name, e-mail, area, your answers, consent",
    "consent": "each time you gave or withdrew consent to statistics, and who recorded it",
    "memberships": "the organisations you belong to or belonged to, and their reference for you",
    "hours": "every log of hours given, with what became of it",
    "ledger": "every entry that moved your credits (to spend, or held for a booking), and why a correction was made",
    "bookings": "the opportunities you booked and how each booking settled",
    "spend_codes": "the spend codes you made (never the digits)",
    "sign_in": "how you sign in: your account, cards, e-mail links and sessions (never a secret)",
}


def may_export(principal: Principal, volunteer_id: str) -> None:
    """The volunteer or an admin: an organisation reads its members' credits, not their whole record."""
    if principal.role is Role.ADMIN or (principal.role is Role.VOLUNTEER and principal.volunteer_id == volunteer_id):
        return
    raise forbid("only the volunteer themself, or an admin, may have everything held about a volunteer")


def export(engine: Engine, principal: Principal, volunteer_id: str) -> dict[str, Section]:
    may_export(principal, volunteer_id)
    with engine.connect() as conn:
        profile = _profile(conn, volunteer_id)
        return {
            "profile": profile,
            "consent": [{"consent_stats": c.consent_stats, "changed_at": c.changed_at, "recorded_by": c.recorded_by}
                        for c in consent.history(conn, volunteer_id)],
            "memberships": _memberships(conn, volunteer_id),
            "hours": _hours(conn, volunteer_id),
            "ledger": _ledger(conn, volunteer_id),
            "bookings": _bookings(conn, volunteer_id),
            "spend_codes": _spend_codes(conn, volunteer_id),
            "sign_in": _sign_in(conn, volunteer_id),
        }


def _profile(conn: Connection, volunteer_id: str) -> Section:
    v, pr = schema.volunteers, schema.volunteer_profiles
    row = conn.execute(select(v.c.id, pr.c.display_name, pr.c.email, v.c.area, v.c.age_band, v.c.seb, v.c.seb_detail,
                              v.c.first_time_volunteer, v.c.consent_stats, v.c.created_at)
                       .outerjoin(pr, pr.c.volunteer_id == v.c.id).where(v.c.id == volunteer_id)).first()
    if row is None:
        raise ApiError(404, "unknown_volunteer", f"no volunteer {volunteer_id}")
    return [{"volunteer_id": row.id, "name": row.display_name, "email": row.email, "area": row.area,
             "age_band": row.age_band, "background": row.seb, "main_household_earner_at_14": row.seb_detail,
             "first_time_volunteer": row.first_time_volunteer, "consent_stats": row.consent_stats,
             "registered_at": row.created_at}]


def _memberships(conn: Connection, volunteer_id: str) -> Section:
    m, o, r = schema.memberships, schema.organisations, schema.volunteer_references
    rows = conn.execute(select(m.c.org_id, o.c.name, m.c.started_at, m.c.ended_at, r.c.reference)
                        .join(o, o.c.id == m.c.org_id)
                        .outerjoin(r, (r.c.org_id == m.c.org_id) & (r.c.volunteer_id == m.c.volunteer_id))
                        .where(m.c.volunteer_id == volunteer_id).order_by(m.c.started_at)).all()
    return [{"organisation_id": row.org_id, "organisation": row.name, "from": row.started_at, "until": row.ended_at,
             "their_reference_for_you": row.reference} for row in rows]


def _hours(conn: Connection, volunteer_id: str) -> Section:
    logs, d, o = schema.hours_logs, schema.hours_decisions, schema.organisations
    rows = conn.execute(select(logs.c.event_id, logs.c.worked_on, logs.c.minutes,
                               notes.activity_of(logs.c.event_id).label("activity"), o.c.name, logs.c.logged_at,
                               d.c.decision, notes.rejection_reason_of(d.c.decision_event_id).label("reason"),
                               d.c.decided_at)
                        .join(o, o.c.id == logs.c.org_id)
                        .outerjoin(d, d.c.log_event_id == logs.c.event_id)
                        .where(logs.c.volunteer_id == volunteer_id).order_by(logs.c.worked_on, logs.c.logged_at)).all()
    return [{"log_id": row.event_id, "date": row.worked_on, "minutes": row.minutes, "activity": row.activity,
             "organisation": row.name, "logged_at": row.logged_at, "status": row.decision or "pending",
             "reason": row.reason or None, "decided_at": row.decided_at} for row in rows]


def _ledger(conn: Connection, volunteer_id: str) -> Section:
    e, p, o, op = schema.entries, schema.postings, schema.organisations, schema.opportunities
    fix = schema.corrections
    accounts = {volunteer_account(volunteer_id): "to spend", holds_account(volunteer_id): "held for a booking"}
    rows = conn.execute(select(e.c.id, e.c.event_id, e.c.kind, e.c.occurred_at, p.c.account_key, p.c.amount, o.c.name,
                               op.c.title, fix.c.reason)
                        .join(e, e.c.id == p.c.entry_id)
                        .outerjoin(o, o.c.id == e.c.org_id).outerjoin(op, op.c.id == e.c.opportunity_id)
                        .outerjoin(fix, fix.c.event_id == e.c.event_id)
                        .where(p.c.account_key.in_(list(accounts))).order_by(e.c.id, p.c.account_key)).all()
    return [{"entry_id": row.id, "event_id": row.event_id, "kind": row.kind, "at": row.occurred_at,
             "credits": accounts[row.account_key], "amount": credits(row.amount), "organisation": row.name,
             "opportunity": row.title, "why_corrected": row.reason} for row in rows]


def _bookings(conn: Connection, volunteer_id: str) -> Section:
    e, o, op = schema.entries, schema.organisations, schema.opportunities
    settled, held = schema.entries.alias("settled"), schema.postings
    rows = conn.execute(select(e.c.event_id, e.c.occurred_at, op.c.title, o.c.name, op.c.starts_at, held.c.amount,
                               settled.c.kind, settled.c.occurred_at.label("settled_at"))
                        .outerjoin(op, op.c.id == e.c.opportunity_id).outerjoin(o, o.c.id == e.c.org_id)
                        .join(held, (held.c.entry_id == e.c.id) & (held.c.account_key == holds_account(volunteer_id)))
                        .outerjoin(settled, settled.c.related_entry_id == e.c.id)
                        .where(e.c.volunteer_id == volunteer_id, e.c.kind == "opportunity_booked")
                        .order_by(e.c.id)).all()
    return [{"booking_id": row.event_id, "booked_at": row.occurred_at, "opportunity": row.title, "partner": row.name,
             "starts_at": row.starts_at, "credits_held": credits(row.amount),
             "settled": row.kind or "open", "settled_at": row.settled_at} for row in rows]


def _spend_codes(conn: Connection, volunteer_id: str) -> Section:
    c, u, o = schema.spend_codes, schema.spend_code_uses, schema.organisations
    rows = conn.execute(select(c.c.id, o.c.name, c.c.max_amount, c.c.created_at, c.c.expires_at, u.c.used_at)
                        .join(o, o.c.id == c.c.partner_id).outerjoin(u, u.c.code_id == c.c.id)
                        .where(c.c.volunteer_id == volunteer_id).order_by(c.c.created_at)).all()
    return [{"code_id": row.id, "partner": row.name, "up_to": credits(row.max_amount), "made_at": row.created_at,
             "expires_at": row.expires_at, "used_at": row.used_at} for row in rows]


def _sign_in(conn: Connection, volunteer_id: str) -> Section:
    people, cards, links, sessions = schema.people, schema.sign_in_cards, schema.sign_in_links, schema.web_sessions
    person = conn.execute(select(people.c.id, people.c.email, people.c.created_at, people.c.disabled_at)
                          .where(people.c.volunteer_id == volunteer_id)).first()
    if person is None:
        return []
    rows: Section = [{"what": "account", "email": person.email, "at": person.created_at, "used_at": None,
                      "ended_at": person.disabled_at}]
    rows += [{"what": "sign-in card", "email": None, "at": row.created_at, "used_at": row.used_at,
              "ended_at": row.voided_at}
             for row in conn.execute(select(cards.c.created_at, cards.c.used_at, cards.c.voided_at)
                                     .where(cards.c.person_id == person.id).order_by(cards.c.created_at))]
    rows += [{"what": "e-mail link", "email": person.email, "at": row.created_at, "used_at": row.used_at,
              "ended_at": row.expires_at}
             for row in conn.execute(select(links.c.created_at, links.c.used_at, links.c.expires_at)
                                     .where(links.c.person_id == person.id).order_by(links.c.created_at))]
    rows += [{"what": "session", "email": None, "at": row.created_at, "used_at": row.last_seen_at,
              "ended_at": row.revoked_at or row.expires_at}
             for row in conn.execute(select(sessions.c.created_at, sessions.c.last_seen_at, sessions.c.revoked_at,
                                            sessions.c.expires_at)
                                     .where(sessions.c.person_id == person.id).order_by(sessions.c.created_at))]
    return rows


# --- the two forms ------------------------------------------------------------------------------------------


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def as_json(sections: dict[str, Section]) -> bytes:
    return json.dumps({name: [{k: _plain(v) for k, v in row.items()} for row in rows]
                       for name, rows in sections.items()}, ensure_ascii=False, indent=2).encode("utf-8")


def as_csv_bundle(sections: dict[str, Section]) -> bytes:
    """A zip of one CSV a section (UTF-8 with a byte-order mark, which Excel needs to read it as UTF-8), every cell
    made inert as a formula, and a README naming each file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        volunteer_id = sections["profile"][0]["volunteer_id"]
        readme = [f"Everything timecredits holds about volunteer {volunteer_id}.", "",
                  *(f"{name}.csv: {what}" for name, what in SECTIONS.items()), "",
                  "Times are UTC. Amounts are in credits."]
        bundle.writestr("README.txt", "\n".join(readme) + "\n")
        for name in SECTIONS:
            rows = sections[name]
            text = io.StringIO()
            writer = csv.writer(text)
            if rows:
                writer.writerow(rows[0].keys())
                writer.writerows([inert(_cell(value)) for value in row.values()] for row in rows)
            bundle.writestr(f"{name}.csv", "\ufeff" + text.getvalue())
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(_plain(value))
