"""People who sign in, their one-time sign-in links and cards, and their sessions, on PostgreSQL
(docs/design.md §8.1). Secrets are made here, returned once and stored as SHA-256 digests only."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from api.auth import Principal, Role
from api.services import audit
from ledger.pg import schema

LINK_LIFETIME = timedelta(minutes=15)
#: Sign-in links an e-mail address, and a client address, may ask for in `REQUEST_WINDOW`.
LINKS_AN_EMAIL, LINKS_AN_ADDRESS = 5, 20
REQUEST_WINDOW = timedelta(minutes=15)
#: A card's code: 10 letters and digits a person can read and type without confusing them (no 0/O, 1/I/L).
CARD_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ2346789"
CARD_LENGTH = 10


class PersonRole(StrEnum):
    ADMIN = "admin"
    LEAD = "lead"
    COORDINATOR = "coordinator"
    FRONT_DESK = "front_desk"
    VOLUNTEER = "volunteer"


#: How long a session lasts without a request (idle) and at most (absolute): a shared desk computer left signed in
#: is not a standing credential; a volunteer's own phone does not ask every morning.
IDLE = {True: timedelta(minutes=30), False: timedelta(days=7)}
ABSOLUTE = {True: timedelta(hours=12), False: timedelta(days=30)}


@dataclass(frozen=True, slots=True)
class Person:
    id: uuid.UUID
    email: str | None
    display_name: str
    role: PersonRole
    org_id: str | None
    volunteer_id: str | None

    @property
    def is_staff(self) -> bool:
        return self.role is not PersonRole.VOLUNTEER

    def principal(self) -> Principal:
        """Who the person acts as, on the same rules as an API token (docs/design.md §8.2)."""
        role = {PersonRole.ADMIN: Role.ADMIN, PersonRole.LEAD: Role.LEAD, PersonRole.COORDINATOR: Role.ORG,
                PersonRole.FRONT_DESK: Role.ORG, PersonRole.VOLUNTEER: Role.VOLUNTEER}[self.role]
        return Principal(role, org_id=self.org_id, volunteer_id=self.volunteer_id, person_id=self.id)


@dataclass(frozen=True, slots=True)
class Session:
    person: Person
    csrf_token: str
    expires_at: datetime


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


_PERSON_COLUMNS = (schema.people.c.id, schema.people.c.email, schema.people.c.display_name, schema.people.c.role,
                   schema.people.c.org_id, schema.people.c.volunteer_id)


def _person(row: object) -> Person:
    id_, email, name, role, org_id, volunteer_id = row  # type: ignore[misc]
    return Person(id_, email, name, PersonRole(role), org_id, volunteer_id)


def add_person(engine: Engine | Connection, display_name: str, role: PersonRole, *, email: str | None = None,
               org_id: str | None = None, volunteer_id: str | None = None,
               invited_by: uuid.UUID | None = None) -> Person:
    """A person who may sign in; given a connection, written in its transaction (a volunteer registered by their
    organisation becomes one in the same transaction)."""
    person = Person(uuid.uuid4(), normalise_email(email) if email else None, display_name, role, org_id, volunteer_id)
    values = dict(id=person.id, email=person.email, display_name=display_name, role=role.value, org_id=org_id,
                  volunteer_id=volunteer_id, invited_by=invited_by)
    if isinstance(engine, Connection):
        engine.execute(insert(schema.people).values(**values))
        return person
    with engine.begin() as conn:
        conn.execute(insert(schema.people).values(**values))
    return person


def volunteer_person(conn: Connection, volunteer_id: str) -> Person | None:
    """The enabled person who signs in as this volunteer, if there is one."""
    p = schema.people
    row = conn.execute(select(*_PERSON_COLUMNS).where(p.c.volunteer_id == volunteer_id, p.c.role == "volunteer",
                                                       p.c.disabled_at.is_(None))).first()
    return _person(row) if row else None


def has_live_card(conn: Connection, person_id: uuid.UUID) -> bool:
    cards = schema.sign_in_cards
    return conn.execute(select(cards.c.id).where(cards.c.person_id == person_id, cards.c.voided_at.is_(None),
                                                 cards.c.used_at.is_(None))).first() is not None


def person_by_email(conn: Connection, email: str) -> Person | None:
    p = schema.people
    row = conn.execute(select(*_PERSON_COLUMNS).where(p.c.email == normalise_email(email),
                                                       p.c.disabled_at.is_(None))).first()
    return _person(row) if row else None


# --- sign-in links -------------------------------------------------------------------------------------------


class TooManyRequests(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__("too many sign-in links asked for")
        self.retry_after = retry_after


def request_link(engine: Engine, email: str, address: str, now: datetime | None = None) -> tuple[Person, str] | None:
    """A new sign-in link's token for the enabled person with `email` (None for an address nobody has, so that
    the page can say the same either way). Raises `TooManyRequests` past the limits, known address or not."""
    now = now or datetime.now(UTC)
    email_digest = digest(normalise_email(email))
    r = schema.sign_in_requests
    with engine.begin() as conn:
        conn.execute(delete(r).where(r.c.requested_at < now - timedelta(days=1)))
        recent = conn.execute(select(
            func.count().filter(r.c.email_sha256 == email_digest), func.count().filter(r.c.address == address),
            func.min(r.c.requested_at)).where(r.c.requested_at > now - REQUEST_WINDOW,
                                              (r.c.email_sha256 == email_digest) | (r.c.address == address))).one()
        if recent[0] >= LINKS_AN_EMAIL or recent[1] >= LINKS_AN_ADDRESS:
            raise TooManyRequests(recent[2] + REQUEST_WINDOW - now)
        conn.execute(insert(r).values(email_sha256=email_digest, address=address, requested_at=now))
        person = person_by_email(conn, email)
        if person is None:
            return None
        return person, _new_link(conn, person.id, now)


def new_link(engine: Engine, person_id: uuid.UUID, now: datetime | None = None) -> str:
    """A sign-in link's token for a person, not sent (`timecredits sign-in-link`, the demo)."""
    with engine.begin() as conn:
        return _new_link(conn, person_id, now or datetime.now(UTC))


def _new_link(conn: Connection, person_id: uuid.UUID, now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(insert(schema.sign_in_links).values(token_sha256=digest(token), person_id=person_id, created_at=now,
                                                     expires_at=now + LINK_LIFETIME))
    return token


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/app/sign-in/link/{token}"


def link_person(engine: Engine, token: str, now: datetime | None = None) -> Person | None:
    """The person a link signs in, without using it (the page that asks to confirm)."""
    now = now or datetime.now(UTC)
    links, p = schema.sign_in_links, schema.people
    with engine.connect() as conn:
        row = conn.execute(select(*_PERSON_COLUMNS).join_from(links, p, p.c.id == links.c.person_id).where(
            links.c.token_sha256 == digest(token), links.c.used_at.is_(None), links.c.expires_at > now,
            p.c.disabled_at.is_(None))).first()
    return _person(row) if row else None


def use_link(engine: Engine, token: str, now: datetime | None = None) -> Person | None:
    """Use a link once: the person it signs in, or None if it is unknown, used or expired."""
    now = now or datetime.now(UTC)
    links = schema.sign_in_links
    with engine.begin() as conn:
        person_id = conn.execute(update(links).where(
            links.c.token_sha256 == digest(token), links.c.used_at.is_(None), links.c.expires_at > now,
        ).values(used_at=now).returning(links.c.person_id)).scalar_one_or_none()
        return _enabled(conn, person_id)


def _enabled(conn: Connection, person_id: uuid.UUID | None) -> Person | None:
    if person_id is None:
        return None
    p = schema.people
    row = conn.execute(select(*_PERSON_COLUMNS).where(p.c.id == person_id, p.c.disabled_at.is_(None))).first()
    return _person(row) if row else None


# --- sign-in cards -------------------------------------------------------------------------------------------


def new_card(engine: Engine, person_id: uuid.UUID, now: datetime | None = None) -> str:
    """A new card's code for the person; their earlier card is void from now on."""
    now = now or datetime.now(UTC)
    code = "".join(secrets.choice(CARD_ALPHABET) for _ in range(CARD_LENGTH))
    cards = schema.sign_in_cards
    with engine.begin() as conn:
        conn.execute(update(cards).where(cards.c.person_id == person_id, cards.c.voided_at.is_(None))
                     .values(voided_at=now))
        conn.execute(insert(cards).values(id=uuid.uuid4(), person_id=person_id, code_sha256=digest(code),
                                          created_at=now))
    return code


def read_card_code(typed: str) -> str:
    """A card's code as typed: spaces and dashes dropped, upper case."""
    return "".join(ch for ch in typed.upper() if ch.isalnum())


#: Wrong card codes a client address may type in `REQUEST_WINDOW` before it is refused for a while: a code has
#: about 49 bits, and this keeps guessing them hopeless (docs/design.md §8.1).
CARD_FAILURES_AN_ADDRESS = 10
#: The `sign_in_requests` rows of wrong card codes carry this in place of an e-mail address's digest.
_CARD_FAILURE = digest("wrong sign-in card code")


def use_card(engine: Engine, typed: str, address: str = "", now: datetime | None = None) -> Person | None:
    """Sign in once with a card: the person, or None for a code that is unknown, void or used. Raises
    `TooManyRequests` once `address` has typed `CARD_FAILURES_AN_ADDRESS` wrong codes in the window."""
    now = now or datetime.now(UTC)
    cards, r = schema.sign_in_cards, schema.sign_in_requests
    with engine.begin() as conn:
        failures = conn.execute(select(func.count(), func.min(r.c.requested_at)).where(
            r.c.email_sha256 == _CARD_FAILURE, r.c.address == address,
            r.c.requested_at > now - REQUEST_WINDOW)).one()
        if failures[0] >= CARD_FAILURES_AN_ADDRESS:
            raise TooManyRequests(failures[1] + REQUEST_WINDOW - now)
        person_id = conn.execute(update(cards).where(
            cards.c.code_sha256 == digest(read_card_code(typed)), cards.c.voided_at.is_(None),
            cards.c.used_at.is_(None)).values(used_at=now).returning(cards.c.person_id)).scalar_one_or_none()
        person = _enabled(conn, person_id)
        if person is None:
            conn.execute(insert(r).values(email_sha256=_CARD_FAILURE, address=address, requested_at=now))
        return person


# --- sessions ------------------------------------------------------------------------------------------------


def start_session(engine: Engine, person: Person, now: datetime | None = None) -> tuple[str, Session]:
    """A new session's cookie value (shown once) and the session."""
    now = now or datetime.now(UTC)
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires_at = now + ABSOLUTE[person.is_staff]
    with engine.begin() as conn:
        conn.execute(insert(schema.web_sessions).values(
            id_sha256=digest(cookie), person_id=person.id, csrf_token=csrf, created_at=now, last_seen_at=now,
            expires_at=expires_at))
    return cookie, Session(person, csrf, expires_at)


def resume_session(engine: Engine, cookie: str, now: datetime | None = None) -> Session | None:
    """The live session a cookie names, seen now; None when unknown, revoked, idle too long or past its end."""
    now = now or datetime.now(UTC)
    s, p = schema.web_sessions, schema.people
    with engine.begin() as conn:
        row = conn.execute(select(*_PERSON_COLUMNS, s.c.csrf_token, s.c.expires_at, s.c.last_seen_at)
                           .join_from(s, p, p.c.id == s.c.person_id)
                           .where(s.c.id_sha256 == digest(cookie), s.c.revoked_at.is_(None), s.c.expires_at > now,
                                  p.c.disabled_at.is_(None))).first()
        if row is None:
            return None
        person = _person(row[:6])
        if now - row.last_seen_at > IDLE[person.is_staff]:
            return None
        if now - row.last_seen_at > timedelta(seconds=60):  # one write a minute a session, not one a page
            conn.execute(update(s).where(s.c.id_sha256 == digest(cookie)).values(last_seen_at=now))
    return Session(person, row.csrf_token, row.expires_at)


def end_session(engine: Engine, cookie: str) -> None:
    s = schema.web_sessions
    with engine.begin() as conn:
        conn.execute(update(s).where(s.c.id_sha256 == digest(cookie), s.c.revoked_at.is_(None))
                     .values(revoked_at=func.now()))


def end_every_session(engine: Engine, person_id: uuid.UUID) -> int:
    s = schema.web_sessions
    with engine.begin() as conn:
        return conn.execute(update(s).where(s.c.person_id == person_id, s.c.revoked_at.is_(None))
                            .values(revoked_at=func.now())).rowcount


def disable(engine: Engine, person_id: uuid.UUID, by: Principal | str) -> str | None:
    """The person can no longer sign in, and every session of theirs ends; their name, or None if unknown."""
    p, s = schema.people, schema.web_sessions
    with engine.begin() as conn:
        name = conn.execute(update(p).where(p.c.id == person_id, p.c.disabled_at.is_(None))
                            .values(disabled_at=func.now()).returning(p.c.display_name)).scalar_one_or_none()
        conn.execute(update(s).where(s.c.person_id == person_id, s.c.revoked_at.is_(None))
                     .values(revoked_at=func.now()))
        if name is not None:
            audit.record(conn, by, "person_disabled", f"person:{person_id}")
    return name
