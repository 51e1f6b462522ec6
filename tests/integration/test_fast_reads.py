"""The API's hand-written asyncpg reads (api/reads.py) answer exactly what the SQLAlchemy path answers."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from api.auth import Principal, PrincipalCache, Refusal, Role, create_token, principal_for, principal_for_async
from api.reads import FastReads
from ledger.domain import BookOpportunity, EarnCredits
from ledger.pg.repository import LedgerRepository, VolunteerBalance
from tests.ledger_helpers import LedgerDriver, new_id

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)


def _register(engine: Engine, *volunteers: str) -> None:
    with engine.begin() as conn:
        for volunteer in volunteers:
            conn.execute(text("INSERT INTO volunteers (id, area, consent_stats) VALUES (:v, 'E09000025', true)"),
                         {"v": volunteer})


async def _fast(url: str, work):  # type: ignore[no-untyped-def]
    reads = FastReads(url, size=2)
    await reads.start()
    try:
        return await work(reads)
    finally:
        await reads.close()


def test_balances_agree_for_earning_holding_untouched_and_unknown_volunteers(engine: Engine) -> None:
    _register(engine, "earner", "booker", "idle", "zoe.1_x")
    repository = LedgerRepository(engine)
    LedgerDriver(engine).apply([
        EarnCredits(new_id(), NOW, "earner", "org1", 250),
        EarnCredits(new_id(), NOW, "booker", "org1", 500),
        BookOpportunity(new_id(), NOW, "booker", "lido", 150, opportunity_id="swim"),
        EarnCredits(new_id(), NOW, "zoe.1_x", "org1", 105),
    ])
    volunteers = ["earner", "booker", "idle", "zoe.1_x", "nobody"]

    async def read_all(reads: FastReads) -> list[tuple[int, int] | None]:
        return [await reads.balance(v) for v in volunteers]

    fast = asyncio.run(_fast(engine.url.render_as_string(hide_password=False), read_all))
    slow = [repository.registered_volunteer_balance(v) for v in volunteers]
    assert [None if f is None else VolunteerBalance(v, *f) for v, f in zip(volunteers, fast)] == slow
    assert slow[1] == VolunteerBalance("booker", 350, 150)
    assert slow[2] == VolunteerBalance("idle", 0, 0)
    assert slow[4] is None


def test_token_lookups_agree_and_a_revoked_token_is_refused(engine: Engine) -> None:
    _register(engine, "v1")
    token, token_id = create_token(engine, Role.VOLUNTEER, volunteer_id="v1")
    revoked, revoked_id = create_token(engine, Role.LEAD)
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = :id"), {"id": revoked_id})
    url = engine.url.render_as_string(hide_password=False)

    async def look_up(reads: FastReads) -> list[object]:
        return [await principal_for_async(reads, engine, t, None, PrincipalCache()) for t in (token, revoked, "nope")]

    fast = asyncio.run(_fast(url, look_up))
    slow = [principal_for(engine, t, None) for t in (token, revoked, "nope")]
    assert fast == slow
    assert fast[0] is not None and fast[0].volunteer_id == "v1" and fast[0].token_id == str(token_id)
    assert fast[1:] == [Refusal.REVOKED, Refusal.UNKNOWN]


def test_a_cached_principal_expires_after_its_time_to_live() -> None:
    cache = PrincipalCache(ttl_s=0.05)
    cache.put(b"d", Principal(Role.LEAD), datetime.now(UTC) + timedelta(days=1))
    assert cache.get(b"d") == Principal(Role.LEAD)
    time.sleep(0.06)
    assert cache.get(b"d") is None


def test_a_principal_is_never_cached_past_its_token_expiry() -> None:
    cache = PrincipalCache(ttl_s=60)
    cache.put(b"d", Principal(Role.LEAD), datetime.now(UTC) + timedelta(seconds=0.05))
    assert cache.get(b"d") == Principal(Role.LEAD)
    time.sleep(0.06)
    assert cache.get(b"d") is None


def test_an_expired_token_is_refused_as_expired_by_both_lookups(engine: Engine) -> None:
    token, token_id = create_token(engine, Role.LEAD)
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = :id"),
                     {"id": token_id})

    async def look_up(reads: FastReads) -> object:
        return await principal_for_async(reads, engine, token, None, PrincipalCache())

    assert asyncio.run(_fast(engine.url.render_as_string(hide_password=False), look_up)) == Refusal.EXPIRED
    assert principal_for(engine, token, None) == Refusal.EXPIRED


def test_last_used_is_written_once_a_minute_not_on_every_lookup(engine: Engine) -> None:
    token, token_id = create_token(engine, Role.LEAD)

    def last_used() -> object:
        with engine.connect() as conn:
            return conn.execute(text("SELECT last_used_at FROM api_tokens WHERE id = :id"), {"id": token_id}).scalar()

    assert last_used() is None
    url = engine.url.render_as_string(hide_password=False)

    async def look_up(reads: FastReads) -> object:
        return await principal_for_async(reads, engine, token, None, PrincipalCache())

    asyncio.run(_fast(url, look_up))
    first = last_used()
    assert first is not None
    asyncio.run(_fast(url, look_up))
    principal_for(engine, token, None)
    assert last_used() == first  # a second lookup within the minute writes nothing
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET last_used_at = now() - interval '2 minutes' WHERE id = :id"),
                     {"id": token_id})
    principal_for(engine, token, None)
    assert last_used() > first  # type: ignore[operator]
