"""Bearer tokens, stored as SHA-256 digests, and the roles and scopes they carry (docs/design.md §5)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, text
from starlette.concurrency import run_in_threadpool

from api.reads import FastReads
from ledger.actors import admin_actor, org_actor, volunteer_actor
from ledger.pg import schema


class Role(StrEnum):
    ADMIN = "admin"
    LEAD = "lead"
    ORG = "org"
    VOLUNTEER = "volunteer"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    org_id: str | None = None
    volunteer_id: str | None = None
    token_id: str | None = None
    #: The person signed in to the web app, when it is one (docs/design.md §8.2); None for an API token.
    person_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        """Who asked, as written in events' `actor`: one organisation's tokens are one actor."""
        if self.role is Role.ORG:
            assert self.org_id is not None
            return org_actor(self.org_id)
        if self.role is Role.VOLUNTEER:
            assert self.volunteer_id is not None
            return volunteer_actor(self.volunteer_id)
        credential = self.token_id or (f"person-{self.person_id}" if self.person_id else None)
        if self.role is Role.ADMIN:
            return admin_actor(credential)
        return f"{self.role.value}:{credential or 'bootstrap'}"


def hash_token(token: str) -> bytes:
    """Tokens are 256 random bits, so a plain SHA-256 is enough to store them safely (no password stretching)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    return "tc_" + secrets.token_urlsafe(32)


DEFAULT_LIFETIME_DAYS = 365
MAX_LIFETIME_DAYS = 3650
#: How long a resolved token is kept in each API process: a revoked token is refused everywhere within it.
CACHE_TTL_S = 1.0
#: `last_used_at` is written at most this often a token (docs/design.md §5.1).
LAST_USED_EVERY = timedelta(minutes=1)


class Refusal(StrEnum):
    """Why a bearer token was refused (the 401's code)."""
    UNKNOWN = "invalid_token"
    REVOKED = "token_revoked"
    EXPIRED = "token_expired"


def expiry_after(days: int = DEFAULT_LIFETIME_DAYS) -> datetime:
    """When a token created now for `days` days expires (1 to `MAX_LIFETIME_DAYS`)."""
    if not 1 <= days <= MAX_LIFETIME_DAYS:
        raise ValueError(f"a token lasts 1 to {MAX_LIFETIME_DAYS} days, not {days}")
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def create_token(engine: Engine, role: Role, org_id: str | None = None, volunteer_id: str | None = None,
                 label: str = "", expires_at: datetime | None = None) -> tuple[str, uuid.UUID]:
    """Store a new token's digest; the token itself is returned once and never stored."""
    token, token_id = new_token(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(insert(schema.api_tokens).values(
            id=token_id, token_sha256=hash_token(token), role=role.value, org_id=org_id, volunteer_id=volunteer_id,
            label=label, expires_at=expires_at or expiry_after()))
    return token, token_id


class PrincipalCache:
    """Tokens resolved in the last `ttl_s` seconds, so that a burst of requests costs one token lookup.

    Only valid tokens are kept (an unknown, revoked or expired one is looked up every time, so guessing cannot
    fill the cache), at most `max_entries` of them, and never past the token's expiry. The price: a token
    revoked in the database keeps working for up to `ttl_s` seconds in each API process that used it just
    before (docs/design.md §5.1 says why one second and not LISTEN/NOTIFY).
    """

    def __init__(self, ttl_s: float = CACHE_TTL_S, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> Principal | None:
        found = self._entries.get(digest)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, digest: bytes, principal: Principal, expires_at: datetime) -> None:
        until = time.monotonic() + min(self.ttl_s, (expires_at - datetime.now(UTC)).total_seconds())
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[digest] = (until, principal)

    def clear(self) -> None:
        """Forget every token: after an erasure, whose revocations must hold at once in this process."""
        with self._lock:
            self._entries.clear()


Resolved = Principal | Refusal
"""Who a token belongs to, or why it is refused."""


def principal_for(engine: Engine, token: str, admin_token: str | None,
                  cache: PrincipalCache | None = None) -> Resolved:
    known, digest = _without_lookup(token, admin_token, cache)
    if known is not None:
        return known
    with engine.connect() as conn:
        row = conn.execute(_TOKEN_QUERY, {"digest": digest}).mappings().first()
        resolved = _remember(cache, digest, row)
        if _due_for_last_used(row, resolved):
            conn.execute(_TOUCH, {"id": row["id"], "every": LAST_USED_EVERY})
            conn.commit()
    return resolved


async def principal_for_async(reads: FastReads | None, engine: Engine, token: str, admin_token: str | None,
                              cache: PrincipalCache | None = None) -> Resolved:
    """`principal_for` on the event loop: from the cache, else through `reads` (or a thread without it)."""
    known, digest = _without_lookup(token, admin_token, cache)
    if known is not None:
        return known
    if reads is None:
        return await run_in_threadpool(principal_for, engine, token, admin_token, cache)
    row = await reads.token(digest)
    resolved = _remember(cache, digest, row)
    if _due_for_last_used(row, resolved):
        await reads.touch_token(row["id"], LAST_USED_EVERY)
    return resolved


def _without_lookup(token: str, admin_token: str | None, cache: PrincipalCache | None) -> tuple[Principal | None, bytes]:
    """The bootstrap admin or a cached principal, with the token's digest for the lookup otherwise."""
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(Role.ADMIN), b""
    digest = hash_token(token)
    return (cache.get(digest) if cache is not None else None), digest


_TOKEN_QUERY = (
    select(schema.api_tokens.c.id, schema.api_tokens.c.role, schema.api_tokens.c.org_id,
           schema.api_tokens.c.volunteer_id, schema.api_tokens.c.revoked_at, schema.api_tokens.c.expires_at,
           schema.api_tokens.c.last_used_at)
    .where(schema.api_tokens.c.token_sha256 == bindparam("digest"))
)
#: The one write a token's use makes, at most once a minute: the WHERE keeps processes racing to one write.
_TOUCH = text("UPDATE api_tokens SET last_used_at = now() WHERE id = :id "
              "AND (last_used_at IS NULL OR last_used_at < now() - CAST(:every AS interval))")


def _remember(cache: PrincipalCache | None, digest: bytes, row: Any) -> Resolved:
    if row is None:
        return Refusal.UNKNOWN
    if row["revoked_at"] is not None:
        return Refusal.REVOKED
    if row["expires_at"] <= datetime.now(UTC):
        return Refusal.EXPIRED
    principal = Principal(Role(row["role"]), row["org_id"], row["volunteer_id"], str(row["id"]))
    if cache is not None:
        cache.put(digest, principal, row["expires_at"])
    return principal


def _due_for_last_used(row: Any, resolved: Resolved) -> bool:
    if not isinstance(resolved, Principal):
        return False
    last = row["last_used_at"]
    return last is None or last < datetime.now(UTC) - LAST_USED_EVERY
