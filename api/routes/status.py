"""Outcome of an event, health, readiness and metrics."""
from __future__ import annotations

import time
from uuid import UUID

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import select, text

from api.auth import Role
from api.deps import PrincipalDep, ServicesDep
from api.errors import ApiError, responses
from api.models import EventStatus
from ledger.pg import schema
from ledger.pg.processing import event_status

router = APIRouter(tags=["status"])


@router.get("/v1/events/{event_id}", response_model=EventStatus, responses=responses(401, 404, 422))
def get_event(event_id: UUID, services: ServicesDep, principal: PrincipalDep) -> EventStatus:
    """`pending` until a worker processed it; then `applied` (with the entry it made, if any) or `rejected`."""
    if principal.role is not Role.ADMIN:
        with services.engine.connect() as conn:
            actor = conn.execute(select(schema.event_requests.c.actor).where(
                schema.event_requests.c.event_id == event_id)).scalar()
        if actor != principal.actor:  # someone else's event is as good as unknown
            raise ApiError(404, "unknown_event", f"no event {event_id} of yours")
    outcome = event_status(services.engine, event_id)
    if outcome is None:
        if principal.role is Role.ADMIN and not _requested(services, event_id):
            raise ApiError(404, "unknown_event", f"no event {event_id}")
        return EventStatus(event_id=event_id, status="pending")
    return EventStatus(event_id=event_id, status=outcome.status, reason=outcome.reason, message=outcome.message,
                       entry_id=outcome.entry_id)


def _requested(services: ServicesDep, event_id: UUID) -> bool:
    with services.engine.connect() as conn:
        return conn.execute(select(schema.event_requests.c.event_id).where(
            schema.event_requests.c.event_id == event_id)).first() is not None


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


class Readiness(BaseModel):
    status: str
    database: bool
    broker: bool


_broker_checked: dict[str, float | bool] = {"at": 0.0, "ok": False}
#: A database that answers but refuses writes (a standby, or `default_transaction_read_only`) cannot take a request
#: that writes: not ready (docs/design.md §5.1).
_TAKES_WRITES = text("SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(services: ServicesDep) -> Response:
    """Readiness: PostgreSQL takes writes (a primary, not read-only) and the producer is connected to the broker."""
    try:
        with services.engine.connect() as conn:
            database = bool(conn.execute(_TAKES_WRITES).scalar())
    except Exception:  # noqa: BLE001 - any failure means not ready
        database = False
    now = time.monotonic()
    if now - float(_broker_checked["at"]) > 2.0:
        _broker_checked.update(at=now, ok=services.producer.connected())
    ready = database and bool(_broker_checked["ok"])
    body = Readiness(status="ready" if ready else "not_ready", database=database, broker=bool(_broker_checked["ok"]))
    return Response(body.model_dump_json(), status_code=200 if ready else 503, media_type="application/json")


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics() -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
