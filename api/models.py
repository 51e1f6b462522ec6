"""Request and response models shared by the routes; amounts travel as decimal strings."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.errors import ApiError
from ledger.amounts import format_credits, parse_credits

# The request models use the event models' field types, so that nothing is accepted at the door that the
# event would refuse (a control character, a naive timestamp, a date given as a number).
from ledger.events import (  # noqa: E402,F401 - re-exported for the routes
    AreaCode,
    Id,
    IsoDate,
    OptionalText100,
    OptionalText500,
    Text200,
    Text500,
    UtcDatetime,
)

MAX_CREDITS = "1000000.00"
CreditAmount = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{1,7}(\.[0-9]{1,2})?$"),
    Field(description=f"Credits as a decimal string with at most two places, e.g. \"1.50\"; at most {MAX_CREDITS}",
          examples=["1.50"]),
]


def hundredths(amount: str) -> int:
    """A request's amount in hundredths; 422 `invalid_amount` above the largest amount an event may carry."""
    value = parse_credits(amount)
    if value > parse_credits(MAX_CREDITS):
        raise ApiError(422, "invalid_amount", f"at most {MAX_CREDITS} credits at a time")
    return value


def credits(hundredths_: int) -> str:
    return format_credits(hundredths_)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Accepted(BaseModel):
    """The request became an event; `GET /v1/events/{event_id}` tells its outcome."""

    event_id: UUID
    status: Literal["pending"] = "pending"


class EventStatus(BaseModel):
    event_id: UUID
    status: Literal["pending", "applied", "rejected"]
    reason: str | None = None
    message: str | None = None
    entry_id: int | None = None


class Created(BaseModel):
    id: str


class Balance(BaseModel):
    volunteer_id: str
    balance: str = Field(description="available + held")
    held: str
    available: str


class StatementLine(BaseModel):
    entry_id: int
    event_id: UUID
    kind: str
    occurred_at: datetime
    amount: str = Field(description="this volunteer's side of the entry; negative when credits left")
    related_event_id: UUID | None = None
    reason_code: str | None = Field(None, description="a correction's coded reason (docs/design.md §5.14)")
    reason: str | None = Field(None, description="a correction's reason, in the words of who asked")


class Statement(BaseModel):
    volunteer_id: str
    items: list[StatementLine]
    next_before: int | None = Field(None, description="pass as `before` to get the next (older) page")
