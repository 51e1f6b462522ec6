"""Turning an accepted request into one event on Kafka (docs/design.md §2: writes are events)."""
from __future__ import annotations

import uuid
from contextvars import ContextVar

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert

from api.auth import Principal
from api.deps import Services
from api.errors import ApiError
from ledger.pg import schema
from ledger.events import Envelope, EventPayload
from producers.kafka import DeliveryError

#: Set by the Idempotency-Key middleware for the request it lets through: the event id that request publishes.
#: A 503 does not prove the event was not delivered (the broker may still write what it received before it stopped
#: answering), so a retry with the same key and body must publish the same event, which the ledger applies once.
request_event_id: ContextVar[uuid.UUID | None] = ContextVar("request_event_id", default=None)


def reserve_event_id() -> uuid.UUID:
    """The id the request's next `publish` will give its event, for a caller that writes a row keyed by it first
    (a correction's reason, docs/design.md §5.14); the Idempotency-Key's id when the request has one."""
    event_id = request_event_id.get() or uuid.uuid4()
    request_event_id.set(event_id)
    return event_id


def publish(services: Services, principal: Principal, payload: EventPayload, conn: Connection | None = None) -> Envelope:
    """Produce `payload` and wait for the broker's acknowledgement; record who asked, for `GET /v1/events`.

    With `conn` (a registry write in progress), the caller's transaction commits only if the event was
    delivered. A broker that does not answer in time gives 503 `broker_unavailable`, never a hang.
    """
    event_id = request_event_id.get() or uuid.uuid4()
    request_event_id.set(None)  # one event a request; should a handler publish another, it gets an id of its own
    # Once an event id: the same event sent again (a sheet imported twice, docs/design.md §8.3) is the same request.
    request_row = insert(schema.event_requests).values(
        event_id=event_id, actor=principal.actor, type=type(payload).__name__, person_id=principal.person_id,
    ).on_conflict_do_nothing(index_elements=["event_id"])
    try:
        if conn is not None:
            conn.execute(request_row)
            return services.producer.publish_and_wait(payload, actor=principal.actor, event_id=event_id,
                                                      timeout=services.publish_timeout_s)
        with services.engine.begin() as own:
            own.execute(request_row)
            return services.producer.publish_and_wait(payload, actor=principal.actor, event_id=event_id,
                                                      timeout=services.publish_timeout_s)
    except DeliveryError as exc:
        raise ApiError(503, "broker_unavailable", f"the event could not be delivered; try again ({exc})") from exc
    except ValueError as exc:  # the event model refused it (e.g. hours dated in the future)
        raise ApiError(422, "invalid_request", str(exc)) from exc
