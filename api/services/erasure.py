"""Erasure of a volunteer's personal data (UK GDPR Art. 17), for the API, the web app and the CLI alike
(docs/design.md §5.15).

One transaction: the erasable tables lose everything that names or describes the person, the registry's row
keeps its pseudonymous id with `erased_at`, so the ledger, the statistics facts and the audit log stay whole and
the intake refuses anything new about them. The append-only tables are not touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, exists, func, select, update

from api.auth import Principal, Role
from api.deps import forbid
from api.errors import ApiError
from api.services import audit
from ledger.accounts import holds_account, volunteer_account
from ledger.pg import schema
from ledger.pg.registry import StoredRegistry

#: What an erasure deletes, in the order the confirmation page and the answer list it, with what each holds.
DELETED: dict[str, str] = {
    "profile": "their name and e-mail address",
    "detailed_background": "their detailed background answer (what their main household earner did when they were 14)",
    "sign_in": "their sign-in account's name and e-mail address (the account is closed)",
    "sessions": "the web app sessions they were signed in with",
    "sign_in_links": "the sign-in links sent to them",
    "sign_in_cards": "their sign-in cards",
    "api_tokens": "their API tokens (revoked, and their labels blanked)",
    "references": "organisations' own references for them",
    "membership_requests": "organisations' requests to add them",
    "memberships": "their current memberships (ended)",
    "correction_reasons": "the reasons, in words, given for correcting their entries",
    "hours_notes": "what their organisations wrote about their hours, and why any were rejected",
    "spend_codes": "their spend codes not used",
    "waiting_lists": "their places on waiting lists",
}

#: What stays, for the confirmation page and docs/privacy.md.
KEPT: tuple[str, ...] = (
    "their pseudonymous id and the ledger's entries for it, so every balance still adds up",
    "the statistics facts, so figures already counted do not change",
    "their area, and, if they consented, their age group and background as codes",
    "the dates their consent to statistics was given or withdrawn",
    "their hours as logged and decided, with what the organisation wrote about the work",
    "the audit log, which names their id only",
)

#: The name an erased person's sign-in row shows in staff lists, instead of theirs.
ERASED_NAME = "Erased volunteer"


@dataclass(frozen=True, slots=True)
class Erasure:
    volunteer_id: str
    erased_at: datetime
    #: How many rows each part of `DELETED` removed or blanked.
    counts: dict[str, int]


def may_erase(principal: Principal) -> None:
    if principal.role is not Role.ADMIN:
        raise forbid("only an admin may erase a volunteer's personal data")


def erase(engine: Engine, principal: Principal, volunteer_id: str, now: datetime | None = None) -> Erasure:
    """Erase the volunteer's personal data and write the `volunteer_erased` audit row, in one transaction.

    `404 unknown_volunteer` for no such volunteer, `410 volunteer_erased` for one erased already."""
    may_erase(principal)
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        v = schema.volunteers
        row = conn.execute(select(v.c.erased_at).where(v.c.id == volunteer_id).with_for_update()).first()
        if row is None:
            raise ApiError(404, "unknown_volunteer", f"no volunteer {volunteer_id}")
        if row.erased_at is not None:
            raise ApiError(410, "volunteer_erased", f"volunteer {volunteer_id} was erased already")
        counts = _erase(conn, volunteer_id, now)
        audit.record(conn, principal, "volunteer_erased", f"volunteer:{volunteer_id}")
    return Erasure(volunteer_id, now, counts)


def is_erased(conn: Connection, volunteer_id: str) -> bool:
    return StoredRegistry(conn).volunteer_erased(volunteer_id)


def refuse_if_erased(conn: Connection, volunteer_id: str) -> None:
    """`410 volunteer_erased` for anything new about an erased volunteer, the intake's rule at the API's door."""
    if is_erased(conn, volunteer_id):
        raise ApiError(410, "volunteer_erased", f"volunteer {volunteer_id} was erased: nothing new can be recorded "
                                                "for them")


def _erase(conn: Connection, volunteer_id: str, now: datetime) -> dict[str, int]:
    s = schema
    counts: dict[str, int] = {}
    people = conn.execute(select(s.people.c.id).where(s.people.c.volunteer_id == volunteer_id)).scalars().all()
    emails = {*conn.execute(select(s.people.c.email).where(s.people.c.volunteer_id == volunteer_id,
                                                           s.people.c.email.is_not(None))).scalars(),
              *conn.execute(select(s.volunteer_profiles.c.email).where(
                  s.volunteer_profiles.c.volunteer_id == volunteer_id,
                  s.volunteer_profiles.c.email.is_not(None))).scalars()}
    counts["profile"] = conn.execute(delete(s.volunteer_profiles)
                                     .where(s.volunteer_profiles.c.volunteer_id == volunteer_id)).rowcount
    counts["detailed_background"] = conn.execute(
        update(s.volunteers).where(s.volunteers.c.id == volunteer_id, s.volunteers.c.seb_detail.is_not(None))
        .values(seb_detail=None)).rowcount
    conn.execute(update(s.volunteers).where(s.volunteers.c.id == volunteer_id).values(erased_at=now, updated_at=now))
    counts["sessions"] = conn.execute(delete(s.web_sessions).where(s.web_sessions.c.person_id.in_(people))).rowcount
    counts["sign_in_links"] = conn.execute(delete(s.sign_in_links)
                                           .where(s.sign_in_links.c.person_id.in_(people))).rowcount
    counts["sign_in_cards"] = conn.execute(delete(s.sign_in_cards)
                                           .where(s.sign_in_cards.c.person_id.in_(people))).rowcount
    if emails:  # the limit on asking for links keeps a digest of the address: it goes too
        from web.people import digest, normalise_email  # the address's digest as the limit on links keeps it

        conn.execute(delete(s.sign_in_requests).where(
            s.sign_in_requests.c.email_sha256.in_([digest(normalise_email(email)) for email in emails])))
    counts["sign_in"] = conn.execute(
        update(s.people).where(s.people.c.volunteer_id == volunteer_id)
        .values(email=None, display_name=ERASED_NAME, disabled_at=func.coalesce(s.people.c.disabled_at, now))
    ).rowcount
    t = s.api_tokens
    counts["api_tokens"] = conn.execute(
        update(t).where(t.c.volunteer_id == volunteer_id)
        .values(revoked_at=func.coalesce(t.c.revoked_at, now), label="")).rowcount
    counts["references"] = conn.execute(delete(s.volunteer_references)
                                        .where(s.volunteer_references.c.volunteer_id == volunteer_id)).rowcount
    counts["membership_requests"] = conn.execute(
        delete(s.membership_requests).where(s.membership_requests.c.volunteer_id == volunteer_id)).rowcount
    m = s.memberships
    counts["memberships"] = conn.execute(update(m).where(m.c.volunteer_id == volunteer_id, m.c.ended_at.is_(None))
                                         .values(ended_at=now, updated_at=now)).rowcount
    e, p = s.entries, s.postings
    theirs = select(e.c.event_id).join(p, p.c.entry_id == e.c.id).where(
        p.c.account_key.in_([volunteer_account(volunteer_id), holds_account(volunteer_id)]))
    counts["correction_reasons"] = conn.execute(
        delete(s.corrections).where(s.corrections.c.target_event_id.in_(theirs))).rowcount
    logs, decisions = s.hours_logs, s.hours_decisions
    their_logs = select(logs.c.event_id).where(logs.c.volunteer_id == volunteer_id)
    their_decisions = select(decisions.c.decision_event_id).where(decisions.c.log_event_id.in_(their_logs))
    counts["hours_notes"] = conn.execute(delete(s.event_notes).where(
        s.event_notes.c.event_id.in_(their_logs) | s.event_notes.c.event_id.in_(their_decisions))).rowcount
    c, u = s.spend_codes, s.spend_code_uses
    counts["spend_codes"] = conn.execute(delete(c).where(
        c.c.volunteer_id == volunteer_id, ~exists().where(u.c.code_id == c.c.id))).rowcount
    counts["waiting_lists"] = conn.execute(delete(s.waitlist).where(s.waitlist.c.volunteer_id == volunteer_id)).rowcount
    return {name: counts[name] for name in DELETED}


__all__ = ["DELETED", "ERASED_NAME", "KEPT", "Erasure", "erase", "is_erased", "may_erase", "refuse_if_erased"]
