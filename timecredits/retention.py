"""The retention sweep: what is needed only for a while is deleted once the programme's settings say it is old
enough (docs/design.md §5.15). The clock is a parameter; `timecredits sweep` runs it once, `timecredits up` on
its timer. The append-only tables are never swept."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, Table, delete, exists, func

from ledger.pg import schema
from timecredits.settings import Settings

#: What the sweep deletes, in the order it reports them, with what each is.
SWEPT: dict[str, str] = {
    "idempotency_keys": "idempotency keys",
    "web_sessions": "ended web sessions",
    "sign_in_links": "expired sign-in links",
    "sign_in_requests": "requests for sign-in links and wrong card codes",
    "spend_codes": "expired spend codes never used",
    "spend_code_failures": "wrong spend codes typed",
}


def _older_than(settings: Settings, now: datetime) -> dict[str, tuple[Table, ColumnElement[bool]]]:
    def before(days: float) -> datetime:
        return now - timedelta(days=days)

    s = schema
    sessions, codes = s.web_sessions, s.spend_codes
    return {
        "idempotency_keys": (s.idempotency_keys,
                             s.idempotency_keys.c.created_at < before(settings.keep_idempotency_keys_days)),
        "web_sessions": (sessions, func.coalesce(sessions.c.revoked_at, sessions.c.expires_at)
                         < before(settings.keep_sessions_days)),
        "sign_in_links": (s.sign_in_links, s.sign_in_links.c.expires_at < before(settings.keep_sign_in_links_days)),
        "sign_in_requests": (s.sign_in_requests,
                             s.sign_in_requests.c.requested_at < before(settings.keep_sign_in_requests_days)),
        # A used code stays: the append-only `spend_code_uses` names it.
        "spend_codes": (codes, (codes.c.expires_at < before(settings.keep_spend_codes_days))
                        & ~exists().where(s.spend_code_uses.c.code_id == codes.c.id)),
        "spend_code_failures": (s.spend_code_failures, s.spend_code_failures.c.failed_at
                                < before(settings.keep_spend_code_failures_days)),
    }


def sweep(engine: Engine, now: datetime, settings: Settings) -> dict[str, int]:
    """Delete everything older than its setting, in one transaction; how many rows of each kind went."""
    with engine.begin() as conn:
        return {name: conn.execute(delete(table).where(old)).rowcount
                for name, (table, old) in _older_than(settings, now).items()}
