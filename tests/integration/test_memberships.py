"""Memberships through the batch pipeline (`LedgerDriver`, the worker's path) on real PostgreSQL: hours only for
current members, history kept, rejoining allowed (docs/design.md §5.4)."""
from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import Engine, text

from ledger.domain import EarnCredits
from ledger.events import MembershipEnded, MembershipStarted
from tests.ledger_helpers import LedgerDriver, as_event, balance

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _spells(engine: Engine, volunteer_id: str) -> list[tuple[str, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT org_id, ended_at IS NULL FROM memberships WHERE volunteer_id = :v "
                                 "ORDER BY started_at"), {"v": volunteer_id}).all()
    return [(org, current) for org, current in rows]


def test_hours_are_refused_once_the_membership_ended_and_applied_again_after_rejoining(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    volunteer, org = "mem-ana", "mem-garden"
    assert driver.apply([EarnCredits(uuid4(), WHEN, volunteer, org, 100)])[0].applied
    with engine.connect() as conn:
        membership_id = conn.execute(text("SELECT id FROM memberships WHERE volunteer_id = :v"), {"v": volunteer}).scalar_one()

    ended = driver.processor.process([as_event(MembershipEnded(membership_id=membership_id, org_id=org,
                                                               volunteer_id=volunteer), occurred_at=WHEN)])
    assert ended.outcomes[0].applied
    refused = driver.apply([EarnCredits(uuid4(), WHEN, volunteer, org, 100)])[0]
    assert (refused.status, refused.reason) == ("rejected", "not_a_member")
    assert balance(engine, f"volunteer:{volunteer}") == 100

    rejoined = driver.processor.process([as_event(MembershipStarted(membership_id=uuid4(), org_id=org,
                                                                    volunteer_id=volunteer), occurred_at=WHEN)])
    assert rejoined.outcomes[0].applied
    assert driver.apply([EarnCredits(uuid4(), WHEN, volunteer, org, 100)])[0].applied
    assert balance(engine, f"volunteer:{volunteer}") == 200
    assert _spells(engine, volunteer) == [(org, False), (org, True)]


def test_a_membership_event_delivered_again_changes_nothing(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    assert driver.apply([EarnCredits(uuid4(), WHEN, "mem-ben", "mem-park", 100)])[0].applied
    again = MembershipStarted(membership_id=uuid4(), org_id="mem-park", volunteer_id="mem-ben")
    event_id = uuid4()
    first = driver.processor.process([as_event(again, event_id, WHEN)]).outcomes[0]
    repeat = driver.processor.process([as_event(again, event_id, WHEN)]).outcomes[0]
    assert first.applied and repeat.applied  # registry events are upserts: applying one again is harmless
    assert _spells(engine, "mem-ben") == [("mem-park", True)]
    # The same membership started again under another id while current is no second spell either.
    other = MembershipStarted(membership_id=uuid4(), org_id="mem-park", volunteer_id="mem-ben")
    assert driver.processor.process([as_event(other, occurred_at=WHEN)]).outcomes[0].applied
    assert _spells(engine, "mem-ben") == [("mem-park", True)]
