"""Builders shared by ledger tests: commands sent through the worker's pipeline, and raw SQL writes that bypass it."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from ledger.accounts import split_account_key
from ledger.amounts import DEFAULT_HUNDREDTHS_PER_HOUR, minutes_to_hundredths
from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    ExpireBooking,
    GiftCredits,
    LedgerCommand,
    MarkNoShow,
    Posting,
    RedeemCredits,
    ReverseEntry,
)
from ledger.events import (
    BookingAttended,
    BookingCancelled,
    BookingExpired,
    BookingNoShow,
    CreditsGifted,
    CreditsRedeemed,
    DecodedEvent,
    EntryReversed,
    EventPayload,
    HoursLogged,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    MembershipStarted,
    VolunteerRegistered,
    decode_event,
    encode_event,
)
from ledger.actors import HOLD_RELEASE_ACTOR, admin_actor, org_actor
from ledger.hashing import GENESIS_HASH, entry_hash, link_hash
from ledger.actors import admin_actor
from ledger.intake import DEFAULT_POLICY, MAX_MINUTES_A_DAY, own_actor
from ledger.pg.processing import EventOutcome, EventProcessor
from ledger.pg.repository import LedgerRepository

NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def insert_raw_entry(
    conn: Connection,
    postings: list[Posting],
    *,
    kind: str = "hours_approved",
    event_id: uuid.UUID | None = None,
    related_entry_id: int | None = None,
    correct_hash: bool = True,
    chain_key: str = "raw",
) -> int:
    """Write an entry, its postings and the batch link that seals it with plain SQL, as an attacker or a buggy
    client would.

    The hashes are computed correctly unless told otherwise, so that the database's other checks are what is
    tested."""
    event_id = event_id or new_id()
    related_event = None
    if related_entry_id is not None:
        related_event = conn.execute(text("SELECT event_id FROM entries WHERE id = :id"), {"id": related_entry_id}).scalar()
    recorded_at = datetime.now(UTC)
    digest = entry_hash(
        prev_hash=None,
        event_id=event_id,
        kind=kind,
        occurred_at=NOW,
        recorded_at=recorded_at,
        volunteer_id=None,
        org_id=None,
        opportunity_id=None,
        related_event_id=related_event,
        postings=postings,
    )
    if not correct_hash:
        digest = bytes(32 - len(b"forged")) + b"forged"
    entry_id = conn.execute(text("SELECT nextval('entries_id_seq')")).scalar_one()
    link_id = conn.execute(text("SELECT nextval('chain_links_id_seq')")).scalar_one()
    for posting in postings:
        kind_, owner = split_account_key(posting.account)
        conn.execute(
            text("INSERT INTO accounts (key, kind, owner_id) VALUES (:k, :kind, :o) ON CONFLICT DO NOTHING"),
            {"k": posting.account, "kind": kind_.value, "o": owner},
        )
    conn.execute(
        text(
            "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, related_entry_id, hash, link_id) "
            "VALUES (:id, :event_id, :kind, :occurred_at, :recorded_at, :related, :hash, :link_id)"
        ),
        {
            "id": entry_id,
            "event_id": event_id,
            "kind": kind,
            "occurred_at": NOW,
            "recorded_at": recorded_at,
            "related": related_entry_id,
            "hash": digest,
            "link_id": link_id,
        },
    )
    # All postings in one statement: the database checks an entry whole at the end of the statement that
    # inserts its postings, so a half-written entry is refused on the spot.
    values = ", ".join(f"(:e, :a{n}, :amount{n})" for n in range(len(postings)))
    params: dict[str, Any] = {"e": entry_id}
    for n, posting in enumerate(postings):
        params.update({f"a{n}": posting.account, f"amount{n}": posting.amount})
    conn.execute(text(f"INSERT INTO postings (entry_id, account_key, amount) VALUES {values}"), params)
    insert_raw_link(conn, link_id, chain_key, [digest])
    return entry_id


def chain_head(conn: Connection, chain_key: str) -> tuple[int, bytes]:
    """(seq, link) of the chain's newest link; (0, genesis) for a chain not started."""
    row = conn.execute(text("SELECT seq, link FROM chain_links WHERE chain_key = :c ORDER BY seq DESC LIMIT 1"),
                       {"c": chain_key}).first()
    return (row[0], bytes(row[1])) if row else (0, GENESIS_HASH)


def insert_raw_link(conn: Connection, link_id: int, chain_key: str, entry_hashes: list[bytes], *,
                    seq: int | None = None, prev_link: bytes | None = None, forged: bool = False) -> None:
    """The link that seals `entry_hashes` on `chain_key`, after the chain's head unless told otherwise."""
    head_seq, head_link = chain_head(conn, chain_key)
    seq = head_seq + 1 if seq is None else seq
    prev_link = head_link if prev_link is None else prev_link
    link = link_hash(chain_key=chain_key, seq=seq, prev_link=prev_link, entry_hashes=entry_hashes)
    conn.execute(
        text("INSERT INTO chain_links (id, chain_key, seq, prev_link, link, entry_count, recorded_at) "
             "VALUES (:id, :chain, :seq, :prev, :link, :n, now())"),
        {"id": link_id, "chain": chain_key, "seq": seq, "prev": prev_link,
         "link": b"\x09" * 32 if forged else link, "n": len(entry_hashes)},
    )


def scalar(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar()


# --- ledger commands driven through the worker's own pipeline --------------------------------------------


class LedgerDriver:
    """Ledger commands sent as the events that ask for them, through `EventProcessor`: the pipeline the worker
    runs, so that what a test shows about the ledger holds for the worker too.

    The volunteers, organisations and opportunities a command names are registered first (registry events,
    idempotent). `EarnCredits` becomes hours logged with an auto-approving organisation, so its amount must be what
    a whole number of minutes earns at the default rate (`minutes_to_hundredths`), at most 24 hours a log; a
    volunteer's logs fill the days back from the event's, 24 hours a day.
    """

    AREA = "E09000030"

    def __init__(self, engine: Engine, chain: str | None = None) -> None:
        self.processor = EventProcessor(engine)
        self._chain = chain
        self._registered: set[tuple[str, str]] = set()
        self._volunteer_of: dict[uuid.UUID, str] = {}
        self._days: dict[uuid.UUID, date] = {}
        self._day_minutes: dict[tuple[str, date], int] = {}

    def apply(self, commands: Sequence[LedgerCommand]) -> list[EventOutcome]:
        """One batch, one outcome a command, in order."""
        events = [self.event(command) for command in commands]
        registry = self._registry_events(commands)
        if registry:
            outcomes = self.processor.process(registry).outcomes
            assert all(o.applied for o in outcomes), outcomes
        chains = None if self._chain is None else [self._chain] * len(events)
        return self.processor.process(events, chains).outcomes

    def event(self, command: LedgerCommand) -> DecodedEvent:
        payload: EventPayload
        actor: str | None = None
        match command:
            case EarnCredits():
                minutes = round(command.amount * 60 / DEFAULT_HUNDREDTHS_PER_HOUR)
                assert minutes_to_hundredths(minutes) == command.amount, f"not a whole number of minutes: {command}"
                payload = HoursLogged(volunteer_id=command.volunteer_id, org_id=command.org_id,
                                      date=self._day_for(command, minutes), minutes=minutes)
            case BookOpportunity():
                payload = OpportunityBooked(volunteer_id=command.volunteer_id, partner_id=command.partner_id,
                                            opportunity_id=self._opportunity(command), amount=command.amount)
            case CancelBooking() | AttendBooking():
                cls = BookingCancelled if isinstance(command, CancelBooking) else BookingAttended
                payload = cls(booking_event_id=command.booking_event_id,
                              volunteer_id=self._volunteer_of.get(command.booking_event_id, "nobody"))
            case ExpireBooking():
                payload = BookingExpired(booking_event_id=command.booking_event_id,
                                         volunteer_id=self._volunteer_of.get(command.booking_event_id, "nobody"))
                actor = HOLD_RELEASE_ACTOR
            case MarkNoShow():
                payload = BookingNoShow(booking_event_id=command.booking_event_id, forfeit=command.forfeit,
                                        volunteer_id=self._volunteer_of.get(command.booking_event_id, "nobody"))
                actor = admin_actor(None) if command.partner_id is None else org_actor(command.partner_id)
            case RedeemCredits():
                payload = CreditsRedeemed(volunteer_id=command.volunteer_id, partner_id=command.partner_id,
                                          amount=command.amount)
            case GiftCredits():
                payload = CreditsGifted(from_volunteer_id=command.from_volunteer_id,
                                        to_volunteer_id=command.to_volunteer_id, amount=command.amount)
            case ReverseEntry():
                payload = EntryReversed(target_event_id=command.target_event_id,
                                        volunteer_id=self._volunteer_of.get(command.target_event_id, "nobody"),
                                        reason="test")
        self._volunteer_of.setdefault(command.event_id, getattr(payload, "volunteer_id", None)
                                      or getattr(payload, "from_volunteer_id", "nobody"))
        return as_event(payload, command.event_id, command.occurred_at, actor)

    def _day_for(self, command: EarnCredits, minutes: int) -> date:
        """The day the hours were worked: the event's own, or the latest before it with room, so that a test may
        earn more than 24 hours for one volunteer without meeting the day's limit (docs/design.md §5.6), the
        same day for the same event id, and the same days for the same commands in the same order."""
        if command.event_id in self._days:
            return self._days[command.event_id]
        day = command.occurred_at.date()
        for back in range(DEFAULT_POLICY.max_days_back + 1):
            candidate = day - timedelta(days=back)
            used = self._day_minutes.get((command.volunteer_id, candidate), 0)
            if used + minutes <= MAX_MINUTES_A_DAY:
                self._day_minutes[(command.volunteer_id, candidate)] = used + minutes
                self._days[command.event_id] = candidate
                return candidate
        raise AssertionError(f"more hours for {command.volunteer_id} than fit in the programme's days back")

    @staticmethod
    def _opportunity(command: BookOpportunity) -> str:
        return command.opportunity_id or f"{command.partner_id}-{command.amount}"

    def _registry_events(self, commands: Sequence[LedgerCommand]) -> list[DecodedEvent]:
        wanted: list[tuple[str, str]] = []
        for command in commands:
            for name in ("volunteer_id", "from_volunteer_id", "to_volunteer_id"):
                if getattr(command, name, None):
                    wanted.append(("volunteer", getattr(command, name)))
            for name in ("org_id", "partner_id"):
                if getattr(command, name, None):
                    wanted.append(("org", getattr(command, name)))
            if isinstance(command, EarnCredits):
                wanted.append(("member", f"{command.org_id}|{command.volunteer_id}"))
            if isinstance(command, BookOpportunity):
                wanted.append(("opportunity", f"{command.partner_id}|{self._opportunity(command)}|{command.amount}"))
        events: list[DecodedEvent] = []
        for kind, name in dict.fromkeys(wanted):
            if (kind, name) in self._registered:
                continue
            self._registered.add((kind, name))
            if kind == "volunteer":
                events.append(as_event(VolunteerRegistered(volunteer_id=name, area=self.AREA, consent_stats=True)))
            elif kind == "org":
                events.append(as_event(OrganisationRegistered(
                    org_id=name, name=name, area=self.AREA, kinds=frozenset({"community", "partner"}),
                    auto_approve=True)))
            elif kind == "member":
                org, volunteer = name.split("|")
                events.append(as_event(MembershipStarted(membership_id=uuid.uuid4(), org_id=org,
                                                         volunteer_id=volunteer)))
            else:
                partner, opportunity, cost = name.split("|")
                events.append(as_event(OpportunityListed(opportunity_id=opportunity, partner_id=partner, title="test",
                                                         category="sport", cost=int(cost), area=self.AREA)))
        # Organisations and volunteers before the opportunities they list and the memberships they hold.
        return sorted(events, key=lambda event: event.type in ("OpportunityListed", "MembershipStarted"))


def actor_for(payload: EventPayload, default: str = "test") -> str:
    """Who a test's event says asked: the volunteer for their own spend or gift (docs/design.md §5.6), an admin
    for a correction (§5.14), else `default`."""
    if isinstance(payload, EntryReversed):
        return admin_actor("test")
    return own_actor(payload) or default


def as_event(payload: EventPayload, event_id: uuid.UUID | None = None, occurred_at: datetime | None = None,
             actor: str | None = None) -> DecodedEvent:
    """A payload as a worker receives it: encoded, then decoded. A spend or a gift is, unless `actor` says
    otherwise, the volunteer's own act (docs/design.md §5.6)."""
    actor = actor or actor_for(payload)
    _, raw = encode_event(payload, actor=actor, event_id=event_id, occurred_at=occurred_at or NOW)
    decoded = decode_event(raw)
    assert isinstance(decoded, DecodedEvent), decoded
    return decoded


def balance(engine: Engine, account: str) -> int:
    return LedgerRepository(engine).balance(account)


def available_and_held(engine: Engine, volunteer_id: str) -> tuple[int, int]:
    found = LedgerRepository(engine).volunteer_balance(volunteer_id)
    return found.available, found.held
