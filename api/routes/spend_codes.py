"""Spend codes: a volunteer authorises one payment to one partner (docs/design.md §5.6).

Only the volunteer makes their codes: credits leave their account by their own act, and a code is how they let a
partner's front desk take a payment for them. The digits are shown once, with the same digits as a QR code.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import ServicesDep, require
from api.errors import responses
from api.models import CreditAmount, Id, Request, credits, hundredths
from api.spend_codes import make_code, qr_svg
from ledger.spend_codes import DEFAULT_VALID_MINUTES, MAX_VALID_MINUTES

router = APIRouter(prefix="/v1", tags=["spend codes"])

VolunteerOnly = Annotated[Principal, Depends(require(Role.VOLUNTEER))]


class NewSpendCode(Request):
    partner_id: Id = Field(description="the partner organisation that may take the payment")
    max_amount: CreditAmount = Field(description="the most credits the payment may take")
    valid_minutes: int = Field(DEFAULT_VALID_MINUTES, strict=True, ge=1, le=MAX_VALID_MINUTES)


class SpendCodeOut(BaseModel):
    id: uuid.UUID
    code: str = Field(description="eight digits, shown once: the volunteer reads them out or shows the QR code")
    partner_id: str
    max_amount: str
    expires_at: datetime
    qr_svg: str = Field(description="the code as a QR code, an SVG image to show inline")


@router.post("/volunteers/{volunteer_id}/spend-codes", status_code=201, response_model=SpendCodeOut,
             responses=responses(400, 401, 403, 404, 422))
def create_spend_code(volunteer_id: str, body: NewSpendCode, services: ServicesDep,
                      principal: VolunteerOnly) -> SpendCodeOut:
    """A one-time code for one payment to one partner, up to `max_amount`, valid for `valid_minutes` (1–30)."""
    code, digits = make_code(services, principal, volunteer_id, body.partner_id, hundredths(body.max_amount),
                             body.valid_minutes)
    return SpendCodeOut(id=code.id, code=digits, partner_id=code.partner_id, max_amount=credits(code.max_amount),
                        expires_at=code.expires_at, qr_svg=qr_svg(digits))
