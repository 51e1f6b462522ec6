"""A synthetic but realistic programme for `timecredits up --demo`: seeded, so every run is the same.

About 20 organisations across London boroughs, 500 volunteers and a year of activity.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from ledger.amounts import minutes_to_hundredths
from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    GiftCredits,
    LedgerCommand,
    RedeemCredits,
)

BOROUGHS = ("E09000030", "E09000012", "E09000025", "E09000022", "E09000028", "E09000014", "E09000019")
COMMUNITY_ORGS = tuple(f"community-{n:02d}" for n in range(1, 15))
PARTNER_ORGS = ("leisure-centre", "theatre", "museum", "adult-education", "sports-club", "training-provider")


def _event_id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def demo_commands(seed: int = 2026, volunteers: int = 500, start: datetime | None = None) -> Iterator[LedgerCommand]:
    """A year of earning, booking, attending, cancelling, redeeming and gifting, in time order."""
    rng = random.Random(seed)
    day0 = start or datetime(2025, 11, 1, 9, 0, tzinfo=UTC)
    volunteer_ids = [f"v{n:04d}" for n in range(1, volunteers + 1)]
    earned: dict[str, int] = dict.fromkeys(volunteer_ids, 0)
    scale = max(1, volunteers // 500)
    for day in range(365):
        moment = day0 + timedelta(days=day)
        open_bookings: list[tuple[uuid.UUID, str]] = []
        for volunteer in rng.sample(volunteer_ids, k=rng.randint(5, 25) * scale):
            amount = minutes_to_hundredths(rng.choice((60, 90, 120, 180, 240)))
            earned[volunteer] += amount
            yield EarnCredits(_event_id(rng), moment, volunteer, rng.choice(COMMUNITY_ORGS), amount)
        for volunteer in rng.sample(volunteer_ids, k=rng.randint(0, 6) * scale):
            if earned[volunteer] < 200:
                continue
            roll = rng.random()
            if roll < 0.5:
                booking = _event_id(rng)
                open_bookings.append((booking, volunteer))
                yield BookOpportunity(booking, moment, volunteer, rng.choice(PARTNER_ORGS), 200, f"opp-{day % 40}")
            elif roll < 0.8:
                yield RedeemCredits(_event_id(rng), moment, volunteer, rng.choice(PARTNER_ORGS), 100)
            else:
                yield GiftCredits(_event_id(rng), moment, volunteer, rng.choice(volunteer_ids), 100)
            earned[volunteer] -= 200
        for booking, _ in open_bookings:
            settle = AttendBooking if rng.random() < 0.85 else CancelBooking
            yield settle(_event_id(rng), moment + timedelta(hours=6), booking)
