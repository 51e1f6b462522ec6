"""The demo programme is the same on every run: docs/api.md shows its balances and counts, and a test runs it."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from timecredits import demo

ROOT = Path(__file__).resolve().parents[2]
_DIGEST = """
import hashlib
from timecredits import demo
events = demo.registry() + list(demo.activity())
print(hashlib.sha256(repr([(e.event_id, e.occurred_at, e.payload) for e in events]).encode()).hexdigest())
"""


def _digest() -> str:
    events = demo.registry() + list(demo.activity())
    return hashlib.sha256(repr([(e.event_id, e.occurred_at, e.payload) for e in events]).encode()).hexdigest()


def test_every_process_makes_the_same_demo_whatever_its_hash_seed() -> None:
    digests = {_digest()}
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        digests.add(subprocess.run([sys.executable, "-c", _DIGEST], env=env, cwd=ROOT, capture_output=True,
                                   text=True, check=True).stdout.strip())
    assert len(digests) == 1, digests


def test_event_ids_are_uuid5s_of_the_seed_and_the_place_and_all_distinct() -> None:
    registry, activity = demo.registry(), list(demo.activity())
    assert registry[0].event_id == demo.demo_event_id(2026, "registry", 1)
    assert activity[0].event_id == demo.demo_event_id(2026, "activity", 1)
    ids = [e.event_id for e in registry + activity]
    assert all(i.version == 5 for i in ids)
    assert len(set(ids)) == len(ids)
    assert demo.registry(seed=7)[0].event_id != registry[0].event_id


def test_the_demo_is_dated_from_fixed_anchors_not_from_today() -> None:
    activity = list(demo.activity())
    assert {e.occurred_at for e in demo.registry()} == {demo.REGISTERED_AT}
    assert min(e.occurred_at.date() for e in activity) == demo.START
    assert max(e.occurred_at.date() for e in activity) < demo.START.replace(year=demo.START.year + 1)


def test_volunteers_have_server_style_ids_and_log_hours_only_where_they_are_members() -> None:
    from ledger.events import HoursLogged, MembershipStarted, VolunteerRegistered
    from ledger.volunteer_ids import VOLUNTEER_ID

    registry = demo.registry()
    volunteers = [e.payload.volunteer_id for e in registry if isinstance(e.payload, VolunteerRegistered)]
    assert len(volunteers) == len(set(volunteers)) == 500
    assert all(VOLUNTEER_ID.fullmatch(v) for v in volunteers)
    assert volunteers == demo.volunteering().ids == demo.volunteering().ids  # the same on every call
    members = {(e.payload.org_id, e.payload.volunteer_id) for e in registry if isinstance(e.payload, MembershipStarted)}
    assert {v for _, v in members} == set(volunteers)
    logged = {(e.payload.org_id, e.payload.volunteer_id) for e in demo.activity() if isinstance(e.payload, HoursLogged)}
    assert logged and logged <= members
    assert len({org for org, _ in logged}) == len(demo.COMMUNITY)
