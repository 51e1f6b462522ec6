"""The API's hottest reads (who a token belongs to, a volunteer's balance) straight on asyncpg.

Why not SQLAlchemy here: through its asyncio engine each read made four round trips (pre-ping, BEGIN, the
query, ROLLBACK) plus greenlet switches, and a sync endpoint costs a thread hop and GIL hand-offs, for a read
that is a single indexed row. A bare asyncpg pool makes one round trip a read. These two statements are the
only SQL the API writes by hand; they read tables that `ledger.pg.schema` describes and the tests check them
against the SQLAlchemy path.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from ledger.accounts import holds_account, volunteer_account

TOKEN_SQL = (
    "SELECT id, role, org_id, volunteer_id, revoked_at, expires_at, last_used_at FROM api_tokens"
    " WHERE token_sha256 = $1"
)
TOUCH_TOKEN_SQL = (
    "UPDATE api_tokens SET last_used_at = now() WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)"
)
BALANCE_SQL = (
    "SELECT available.balance, held.balance FROM volunteers v"
    " LEFT JOIN balances available ON available.account_key = $2"
    " LEFT JOIN balances held ON held.account_key = $3"
    " WHERE v.id = $1"
)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """No reset between uses: these reads leave no session state, and the reset is a round trip of its own."""


class FastReads:
    def __init__(self, database_url: str, size: int = 20) -> None:
        self._dsn, self._ssl = asyncpg_connect_args(database_url)
        self._size = size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        # min_size 0: the API starts (and answers /healthz) while PostgreSQL is still coming up.
        self._pool = await asyncpg.create_pool(self._dsn, ssl=self._ssl, min_size=0, max_size=self._size,
                                               reset=_keep_session,
                                               max_inactive_connection_lifetime=60)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def token(self, digest: bytes) -> Any:
        """The token's row (id, role, scope, revoked_at, expires_at, last_used_at), or None when unknown."""
        assert self._pool is not None
        return await self._pool.fetchrow(TOKEN_SQL, digest)

    async def touch_token(self, token_id: Any, every: timedelta) -> None:
        """Record the token's use, unless it was recorded less than `every` ago (docs/design.md §5.1)."""
        assert self._pool is not None
        await self._pool.execute(TOUCH_TOKEN_SQL, token_id, every)

    async def balance(self, volunteer_id: str) -> tuple[int, int] | None:
        """(available, held) in hundredths for a registered volunteer, None for an unknown one."""
        assert self._pool is not None
        row = await self._pool.fetchrow(BALANCE_SQL, volunteer_id, volunteer_account(volunteer_id),
                                        holds_account(volunteer_id))
        if row is None:
            return None
        return row[0] or 0, row[1] or 0


#: libpq's `sslmode` values, which asyncpg's `ssl` takes by the same names.
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


def asyncpg_connect_args(database_url: str) -> tuple[str, str | None]:
    """A libpq-style URL for asyncpg and its `ssl` argument, from the SQLAlchemy URL (docs/design.md §6).

    `sslmode` (as managed providers write it, `?sslmode=require`) leaves the URL and becomes asyncpg's `ssl`;
    without it, `ssl` is None and asyncpg does as libpq does by default (`prefer`).
    """
    url = make_url(database_url).set(drivername="postgresql")
    query = dict(url.query)
    mode = query.pop("sslmode", None)
    if isinstance(mode, tuple):
        mode = mode[-1]
    if mode is not None and mode not in SSL_MODES:
        raise ValueError(f"sslmode must be one of {', '.join(sorted(SSL_MODES))}, not {mode!r}")
    return url.set(query=query).render_as_string(hide_password=False), mode
