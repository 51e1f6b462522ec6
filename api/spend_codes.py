"""Spend codes at the API: making one for the volunteer, and reading one a partner typed or scanned
(docs/design.md §5.6). The routes (and the pages) call these; the ledger worker has the last word on a code."""
from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import segno
from sqlalchemy import Connection

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from ledger.amounts import format_credits
from ledger.pg.registry import StoredRegistry
from ledger.pg.spend_codes import GUESS_WINDOW, StoredCode, create_code, find_code, recent_failures, record_failure
from ledger.spend_codes import read_code


def make_code(services: Services, principal: Principal, volunteer_id: str, partner_id: str, max_amount: int,
              valid_minutes: int) -> tuple[StoredCode, str]:
    """A new code of the volunteer's for one payment to `partner_id`, and its digits (shown once). Only the
    volunteer makes their codes: credits leave their account by their own act (docs/design.md §5.6)."""
    if principal.role is not Role.VOLUNTEER or principal.volunteer_id != volunteer_id:
        raise forbid("a volunteer makes spend codes for their own credits only")
    if max_amount <= 0:
        raise ApiError(422, "invalid_amount", "the amount must be more than zero")
    with services.engine.begin() as conn:
        partner = StoredRegistry(conn).organisation(partner_id)
        if partner is None:
            raise ApiError(404, "unknown_organisation", f"no organisation {partner_id}")
        if "partner" not in partner.kinds:
            raise ApiError(422, "not_a_partner", f"{partner_id} does not take credits")
        return create_code(conn, volunteer_id, partner_id, max_amount, timedelta(minutes=valid_minutes),
                           datetime.now(UTC))


def qr_svg(code: str) -> str:
    """The digits as a QR code, an SVG a page can show inline (no image file, nothing fetched from elsewhere)."""
    out = io.BytesIO()
    segno.make(code, error="m", micro=False).save(out, kind="svg", scale=6, border=2, xmldecl=False,
                                                  title="Spend code", svgclass="spend-code-qr")
    return out.getvalue().decode()


def redeemable_code(conn: Connection, actor: str, partner_id: str, typed: str, amount: int,
                    guesses: int) -> StoredCode:
    """The code a partner was given, checked for this payment, or the `ApiError` that tells the front desk why
    not. A wrong code counts against `actor`; with `guesses` wrong ones in 15 minutes, it is refused until the
    oldest of them is 15 minutes old (429 rate_limited), right or wrong."""
    now = datetime.now(UTC)
    failures = recent_failures(conn, actor, now)
    if len(failures) >= guesses:
        retry = max(1, math.ceil((failures[-guesses] + GUESS_WINDOW - now).total_seconds()))
        raise ApiError(429, "rate_limited", f"too many wrong spend codes: try again in {retry} seconds",
                       {"Retry-After": str(retry)})
    digits = read_code(typed)
    code = find_code(conn, partner_id, digits) if digits is not None else None
    if code is None:
        record_failure(conn, actor, now)
        conn.commit()
        raise ApiError(422, "invalid_code", "that is not a spend code for this partner: check the digits, or ask "
                                            "the volunteer to make a new code")
    if code.used:
        raise ApiError(409, "code_used", "this spend code was used already: ask the volunteer for a new one")
    if code.expires_at <= now:
        raise ApiError(422, "code_expired", "this spend code has expired: ask the volunteer for a new one")
    if amount > code.max_amount:
        raise ApiError(422, "code_amount_exceeded", f"this spend code allows at most "
                                                    f"{format_credits(code.max_amount)} credits")
    return code
