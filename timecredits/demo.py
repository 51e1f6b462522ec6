"""A synthetic but realistic programme for `timecredits up --demo`, as events: the same on every run.

Twenty organisations across seven London boroughs (fourteen community organisations, six partners), 500
volunteers with areas and demographics, each a member of a home organisation and of one to three others, with
server-style ids (`ledger.volunteer_ids.new_volunteer_id` fed by a generator seeded from the demo's seed),
opportunities, and a year of hours logged with those organisations and approved (a few left pending or
rejected), bookings attended or cancelled, redemptions and gifts.

Nothing depends on the machine or the day: the figures come from a `random.Random` with a fixed seed, the dates
from a fixed start (`START`), and each event id is a UUID 5 of the seed and the event's place in the sequence
(`demo_event_id`), never of the clock or of `uuid4`. So `docs/api.md` can show the demo's balances and counts,
and loading the demo twice into the same data directory changes nothing the second time.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ledger.amounts import minutes_to_hundredths
from ledger.events import (
    BookingAttended,
    BookingCancelled,
    CreditsGifted,
    CreditsRedeemed,
    EventPayload,
    HoursApproved,
    HoursLogged,
    HoursRejected,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
)
from ledger.volunteer_ids import new_volunteer_id

BOROUGHS = {
    "E09000030": "Tower Hamlets",
    "E09000012": "Hackney",
    "E09000025": "Newham",
    "E09000022": "Lambeth",
    "E09000028": "Southwark",
    "E09000014": "Haringey",
    "E09000019": "Islington",
}
COMMUNITY = [
    ("food-bank-th", "Tower Hamlets Food Bank", "E09000030", False),
    ("bike-buddies", "Bike Buddies", "E09000030", True),
    ("hackney-foodshare", "Hackney Foodshare", "E09000012", False),
    ("dalston-garden", "Dalston Community Garden", "E09000012", True),
    ("newham-youth", "Newham Youth Club", "E09000025", False),
    ("stratford-library-friends", "Friends of Stratford Library", "E09000025", False),
    ("brixton-lunch-club", "Brixton Lunch Club", "E09000022", False),
    ("lambeth-litter-pickers", "Lambeth Litter Pickers", "E09000022", True),
    ("peckham-homework-club", "Peckham Homework Club", "E09000028", False),
    ("southwark-befrienders", "Southwark Befrienders", "E09000028", False),
    ("tottenham-repair-cafe", "Tottenham Repair Café", "E09000014", False),
    ("haringey-walks", "Haringey Health Walks", "E09000014", True),
    ("islington-care-shop", "Islington Care Shop", "E09000019", False),
    ("archway-choir", "Archway Community Choir", "E09000019", False),
]
PARTNERS = [
    ("york-hall-leisure", "York Hall Leisure Centre", "E09000030", "sport"),
    ("hackney-empire", "Hackney Empire", "E09000012", "culture"),
    ("newham-adult-learning", "Newham Adult Learning", "E09000025", "course"),
    ("brixton-rec", "Brixton Recreation Centre", "E09000022", "sport"),
    ("southwark-skills", "Southwark Skills Hub", "E09000028", "training"),
    ("islington-works", "Islington Works Taster Days", "E09000019", "work_experience"),
]
AGE_BANDS = ["16-24", "25-34", "35-44", "45-54", "55-64", "65+", "prefer_not_to_say"]
AGE_WEIGHTS = [14, 20, 18, 16, 14, 15, 3]
SEB = ["professional", "intermediate", "lower", "other", "prefer_not_to_say"]
SEB_WEIGHTS = [25, 20, 38, 10, 7]
ACTIVITIES = ["Sorting donations", "Befriending call", "Gardening", "Homework help", "Litter pick", "Cooking lunch",
              "Bike repair", "Reception desk", "Health walk leader", "Choir set-up"]
ACTOR = "demo"


@dataclass(frozen=True)
class DemoEvent:
    event_id: uuid.UUID
    occurred_at: datetime
    payload: EventPayload
    #: Words typed about the event, kept in PostgreSQL keyed by its id, never on the event (docs/design.md §5.16):
    #: (a `ledger.pg.notes` kind, the text).
    note: tuple[str, str] | None = None


#: The first day of the demo's year of activity, and when its organisations and volunteers were registered.
START = date(2025, 11, 1)
REGISTERED_AT = datetime(2025, 10, 1, 9, 0, tzinfo=UTC)
#: The namespace of the demo's event ids (a UUID 5 of the URL namespace and the project's name).
DEMO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "timecredits:demo")


def demo_event_id(seed: int, stream: str, n: int) -> uuid.UUID:
    """The id of the `n`th event of a stream ("registry" or "activity") of the demo made from `seed`."""
    return uuid.uuid5(DEMO_NAMESPACE, f"{seed}/{stream}/{n}")


class _Ids:
    """Event ids in sequence: the same for the same seed and stream, and drawing none of the figures' randomness."""

    def __init__(self, seed: int, stream: str) -> None:
        self._seed, self._stream, self._next = seed, stream, 0

    def __call__(self) -> uuid.UUID:
        self._next += 1
        return demo_event_id(self._seed, self._stream, self._next)


@dataclass(frozen=True)
class Volunteering:
    """Who the demo's volunteers are and where they volunteer: the same for the registry and the activity."""

    ids: list[str]
    #: Each volunteer's organisations, their home organisation first.
    orgs: dict[str, tuple[str, ...]]


def volunteering(seed: int = 2026, volunteers: int = 500) -> Volunteering:
    """Volunteer ids made as the server makes them, from a generator seeded by `seed`, and their memberships."""
    rng = random.Random(f"{seed}/volunteers")
    community = [org for org, *_ in COMMUNITY]
    ids: list[str] = []
    while len(ids) < volunteers:
        volunteer_id = new_volunteer_id(rng)
        if volunteer_id not in ids:
            ids.append(volunteer_id)
    orgs: dict[str, tuple[str, ...]] = {}
    for volunteer_id in ids:
        home = rng.choice(community)
        others = rng.sample([org for org in community if org != home], k=rng.choice([1, 1, 2, 3]))
        orgs[volunteer_id] = (home, *others)
    return Volunteering(ids, orgs)


def registry(seed: int = 2026, volunteers: int = 500) -> list[DemoEvent]:
    """Organisations, opportunities, volunteers and their memberships (tc.admin)."""
    rng = random.Random(seed)
    new_id = _Ids(seed, "registry")
    at = REGISTERED_AT
    events = [
        DemoEvent(new_id(), at, OrganisationRegistered(org_id=org, name=name, area=area, kinds=frozenset({"community"}),
                                                       auto_approve=auto))
        for org, name, area, auto in COMMUNITY
    ]
    events += [
        DemoEvent(new_id(), at, OrganisationRegistered(org_id=org, name=name, area=area, kinds=frozenset({"partner"})))
        for org, name, area, _ in PARTNERS
    ]
    for org, name, area, category in PARTNERS:
        for n in range(3):
            events.append(DemoEvent(new_id(), at, OpportunityListed(
                opportunity_id=f"{org}-{n + 1}", partner_id=org, title=f"{name}: session {n + 1}", category=category,
                cost=100 * (n + 1), capacity=rng.choice([10, 20, 40]), area=area)))
    boroughs = list(BOROUGHS)
    who = volunteering(seed, volunteers)
    for volunteer_id in who.ids:
        area = rng.choices(boroughs, weights=[22, 18, 16, 14, 14, 8, 8])[0]
        age_band = rng.choices(AGE_BANDS, weights=AGE_WEIGHTS)[0]
        seb = rng.choices(SEB, weights=SEB_WEIGHTS)[0]
        first_time = rng.random() < 0.35
        consent = rng.random() < 0.9
        # The answers travel only with consent (docs/design.md §5.16); drawn all the same, so the figures stay.
        events.append(DemoEvent(new_id(), at, VolunteerRegistered(
            volunteer_id=volunteer_id, area=area, age_band=age_band if consent else None,
            seb=seb if consent else None, first_time_volunteer=first_time, consent_stats=consent,
        )))
    for volunteer_id in who.ids:
        for org in who.orgs[volunteer_id]:
            membership_id = uuid.uuid5(DEMO_NAMESPACE, f"{seed}/membership/{org}/{volunteer_id}")
            events.append(DemoEvent(new_id(), at, MembershipStarted(membership_id=membership_id, org_id=org,
                                                                    volunteer_id=volunteer_id)))
    return events


def activity(seed: int = 2026, volunteers: int = 500, days: int = 365,
             start: date = START) -> Iterator[DemoEvent]:
    """A year of activity (tc.activity), in time order."""
    rng = random.Random(seed + 1)
    new_id = _Ids(seed, "activity")
    who = volunteering(seed, volunteers)
    volunteer_ids = who.ids
    regulars = set(rng.sample(volunteer_ids, k=volunteers // 3))
    auto = {org for org, _, _, a in COMMUNITY if a}
    opportunities = [(f"{org}-{n + 1}", org) for org, *_ in PARTNERS for n in range(3)]
    costs = {opp: 100 * (1 + (i % 3)) for i, (opp, _) in enumerate(opportunities)}  # as listed by registry()
    expected: dict[str, int] = dict.fromkeys(volunteer_ids, 0)
    scale = max(1, volunteers // 500)
    for day in range(days):
        today = start + timedelta(days=day)
        at = datetime(today.year, today.month, today.day, 18, 0, tzinfo=UTC)
        season = 1.0 + 0.4 * (today.month in (4, 5, 6, 7, 9))
        active = [v for v in volunteer_ids if rng.random() < (0.05 if v in regulars else 0.01) * season]
        for volunteer in active[: 40 * scale]:
            home, *others = who.orgs[volunteer]
            org = home if rng.random() < 0.8 else rng.choice(others)  # only where they are a member
            minutes = rng.choice([60, 90, 120, 180, 240])
            log_id = new_id()
            yield DemoEvent(log_id, at, HoursLogged(volunteer_id=volunteer, org_id=org, date=today, minutes=minutes),
                            note=("hours_activity", rng.choice(ACTIVITIES)))
            if org in auto:
                expected[volunteer] += minutes_to_hundredths(minutes)
                continue
            decision = rng.random()
            if day > days - 10 and decision < 0.5:
                continue  # recent hours still waiting for approval
            if decision < 0.03:
                yield DemoEvent(new_id(), at + timedelta(hours=1), HoursRejected(
                    log_event_id=log_id, volunteer_id=volunteer, org_id=org), note=("rejection_reason", "logged twice"))
                continue
            expected[volunteer] += minutes_to_hundredths(minutes)
            yield DemoEvent(new_id(), at + timedelta(hours=1), HoursApproved(
                log_event_id=log_id, volunteer_id=volunteer, org_id=org))
        for volunteer in rng.sample(volunteer_ids, k=rng.randint(0, 5) * scale):
            spend_at = at + timedelta(hours=2)
            roll = rng.random()
            if roll < 0.55:
                opportunity, partner = rng.choice(opportunities)
                cost = costs[opportunity]
                if expected[volunteer] < cost:
                    continue
                booking = new_id()
                expected[volunteer] -= cost
                yield DemoEvent(booking, spend_at, OpportunityBooked(volunteer_id=volunteer, opportunity_id=opportunity,
                                                                     partner_id=partner, amount=cost))
                if rng.random() < 0.85:
                    yield DemoEvent(new_id(), spend_at + timedelta(hours=1),
                                    BookingAttended(booking_event_id=booking, volunteer_id=volunteer))
                else:
                    expected[volunteer] += cost
                    yield DemoEvent(new_id(), spend_at + timedelta(hours=1),
                                    BookingCancelled(booking_event_id=booking, volunteer_id=volunteer))
            elif roll < 0.85:
                if expected[volunteer] < 100:
                    continue
                expected[volunteer] -= 100
                _, partner = rng.choice(opportunities)
                yield DemoEvent(new_id(), spend_at, CreditsRedeemed(volunteer_id=volunteer, partner_id=partner, amount=100))
            else:
                if expected[volunteer] < 100:
                    continue
                friend = rng.choice([v for v in volunteer_ids if v != volunteer])
                expected[volunteer] -= 100
                yield DemoEvent(new_id(), spend_at, CreditsGifted(from_volunteer_id=volunteer, to_volunteer_id=friend,
                                                                  amount=100))
