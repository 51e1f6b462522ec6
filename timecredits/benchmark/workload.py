"""A fixed, seeded workload: a registry, then activity in which almost every event makes a ledger entry.

Community organisations auto-approve, so an `HoursLogged` is earned at once; the generator keeps a running
balance per volunteer so that spends, gifts and bookings are mostly affordable (a few per cent are refused
as `insufficient_credits`, as in real life). Every activity event ends as exactly one entry or one rejection,
which is what lets the benchmark count progress with two `count(*)`s.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ledger.events import (
    BookingAttended,
    CreditsGifted,
    CreditsRedeemed,
    HoursLogged,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    encode_event,
)
from ledger.intake import own_actor

AREAS = ("E09000025", "E09000030", "E09000012", "E09000028")
CLUBS = ("bench-club-1", "bench-club-2", "bench-club-3")
PARTNERS = ("bench-lido", "bench-college", "bench-theatre")
OPPORTUNITY_COST = 150


@dataclass(frozen=True, slots=True)
class Record:
    topic: str  # logical: tc.admin or tc.activity
    key: bytes
    value: bytes
    event_id: uuid.UUID


def volunteer_id(n: int) -> str:
    return f"bv{n:06d}"


def registry(volunteers: int, seed: int = 6) -> list[Record]:
    rng = random.Random(seed)
    payloads: list[object] = [
        *(OrganisationRegistered(org_id=c, name=c, area=AREAS[i % len(AREAS)], kinds=frozenset({"community"}),
                                 auto_approve=True) for i, c in enumerate(CLUBS)),
        *(OrganisationRegistered(org_id=p, name=p, area=AREAS[i % len(AREAS)], kinds=frozenset({"partner"}))
          for i, p in enumerate(PARTNERS)),
        *(OpportunityListed(opportunity_id=f"{p}-session", partner_id=p, title="Session", category="sport",
                            cost=OPPORTUNITY_COST, area=AREAS[0]) for p in PARTNERS),
        *(VolunteerRegistered(volunteer_id=volunteer_id(n), area=rng.choice(AREAS), consent_stats=rng.random() < 0.8)
          for n in range(volunteers)),
    ]
    return [_record("tc.admin", payload, rng) for payload in payloads]


def probe_registry(probes: int, seed: int = 7) -> list[Record]:
    """Volunteers of the latency probes, one a probe, with nothing earned until their probe."""
    rng = random.Random(seed)
    return [_record("tc.admin", VolunteerRegistered(volunteer_id=f"probe{n:05d}", area=AREAS[0], consent_stats=False),
                    rng) for n in range(probes)]


def memberships(volunteers: list[str], seed: int = 9) -> list[Record]:
    """Each volunteer a member of every club (an organisation logs hours only for its members). Sent once the
    clubs are applied: keyed by the volunteer, a membership could otherwise reach the worker before its club."""
    rng = random.Random(seed)
    return [_record("tc.admin", MembershipStarted(membership_id=_id(rng), org_id=club, volunteer_id=volunteer), rng)
            for volunteer in volunteers for club in CLUBS]


def activity(events: int, volunteers: int, seed: int = 6, start: datetime | None = None) -> Iterator[Record]:
    """`events` activity records, keyed by the volunteer whose credits they move first."""
    rng = random.Random(seed)
    at = start or datetime(2026, 11, 1, tzinfo=UTC)
    balances = [0] * volunteers
    made = 0
    while made < events:
        n = rng.randrange(volunteers)
        who = volunteer_id(n)
        roll = rng.random()
        at += timedelta(milliseconds=10)
        if roll < 0.55 or balances[n] < 100:
            minutes = rng.choice((30, 60, 90, 120, 180))
            balances[n] += minutes * 100 // 60
            payloads: list[object] = [HoursLogged(volunteer_id=who, org_id=rng.choice(CLUBS), date=date(2026, 10, 31),
                                                  minutes=minutes)]
        elif roll < 0.8:
            amount = rng.randint(50, 250)
            balances[n] -= min(amount, balances[n])
            payloads = [CreditsRedeemed(volunteer_id=who, partner_id=rng.choice(PARTNERS), amount=amount)]
        elif roll < 0.9:
            amount = rng.randint(25, 150)
            other = (n + 1 + rng.randrange(volunteers - 1)) % volunteers
            moved = amount if amount <= balances[n] else 0
            balances[n] -= moved
            balances[other] += moved
            payloads = [CreditsGifted(from_volunteer_id=who, to_volunteer_id=volunteer_id(other), amount=amount)]
        else:
            partner = rng.choice(PARTNERS)
            balances[n] -= min(OPPORTUNITY_COST, balances[n])
            booking = _id(rng)
            yield _record("tc.activity", OpportunityBooked(volunteer_id=who, opportunity_id=f"{partner}-session",
                                                           partner_id=partner, amount=OPPORTUNITY_COST),
                          rng, event_id=booking, occurred_at=at, key=who)
            made += 1
            if made >= events:
                return
            payloads = [BookingAttended(booking_event_id=booking, volunteer_id=who)]
        for payload in payloads:
            yield _record("tc.activity", payload, rng, occurred_at=at, key=who)
            made += 1


def probe(volunteer: str, org_id: str, rng: random.Random, occurred_at: datetime) -> Record:
    """One hour earned by `volunteer`: what the latency benchmark watches for through the API."""
    return _record("tc.activity", HoursLogged(volunteer_id=volunteer, org_id=org_id, date=date(2026, 10, 31),
                                              minutes=60), rng, occurred_at=occurred_at, key=volunteer)


def _id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _record(topic: str, payload: object, rng: random.Random, *, event_id: uuid.UUID | None = None,
            occurred_at: datetime | None = None, key: str | None = None) -> Record:
    event_id = event_id or _id(rng)
    actor = own_actor(payload) or "bench"  # type: ignore[arg-type]  # spends are the volunteer's own act
    _, raw = encode_event(payload, actor=actor, event_id=event_id,  # type: ignore[arg-type]
                             occurred_at=occurred_at or datetime(2026, 11, 1, tzinfo=UTC))
    partition_key = key or payload.partition_key  # type: ignore[attr-defined]
    return Record(topic, partition_key.encode(), raw, event_id)
