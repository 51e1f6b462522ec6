"""The API's pre-checks of a write: the worker's own intake rules, run on the committed registry.

A request the worker would refuse is refused at once, by the same rule function (`ledger.intake.check_payload`),
with the same reason code as the event's rejection would carry (docs/design.md §2).
"""
from __future__ import annotations

from sqlalchemy import Connection

from api.auth import Principal
from api.errors import ApiError
from ledger.domain import Rejection
from ledger.events import EventPayload
from ledger.intake import DEFAULT_POLICY, IntakePolicy, IntakeReason, check_payload
from ledger.pg.registry import StoredRegistry

#: What does not exist is 404, what was decided already 409, the rest (a request the registry contradicts) 422.
_STATUS = {
    IntakeReason.UNKNOWN_VOLUNTEER: 404,
    IntakeReason.UNKNOWN_ORGANISATION: 404,
    IntakeReason.UNKNOWN_OPPORTUNITY: 404,
    IntakeReason.UNKNOWN_LOG: 404,
    IntakeReason.ALREADY_DECIDED: 409,
    IntakeReason.CODE_USED: 409,
    IntakeReason.FULLY_BOOKED: 409,
    IntakeReason.VOLUNTEER_ERASED: 410,
    IntakeReason.AUTHORISATION_REQUIRED: 403,
}


def refuse_what_the_worker_would(conn: Connection, principal: Principal, payload: EventPayload,
                                 policy: IntakePolicy = DEFAULT_POLICY) -> None:
    """Raise the `ApiError` for the intake rule `payload` breaks, if any."""
    try:
        check_payload(payload, StoredRegistry(conn), actor=principal.actor, policy=policy)
    except Rejection as refused:
        reason = IntakeReason(refused.reason.value)
        raise ApiError(_STATUS.get(reason, 422), reason.value, refused.message) from refused
    except ValueError as exc:  # the event model refused it (e.g. hours dated in the future)
        raise ApiError(422, "invalid_request", str(exc)) from exc
