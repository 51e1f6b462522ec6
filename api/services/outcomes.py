"""Waiting a little for the worker's verdict on events a door just published (docs/design.md §8.2, §5.12): a page
tells a person what happened rather than an event id, and a group log approves each log once it is applied."""
from __future__ import annotations

import time
from collections.abc import Sequence
from uuid import UUID

from api.deps import Services
from ledger.pg.processing import event_outcomes

#: How long a door waits for the worker before saying "sent, it will show in a moment".
WAIT_S = 5.0


def wait_outcomes(services: Services, event_ids: Sequence[UUID],
                  timeout_s: float = WAIT_S) -> dict[UUID, tuple[str, str | None]]:
    """What became of each event: ('applied'|'rejected'|'pending', reason), asking about all of them at once
    until none is pending or `timeout_s` passes."""
    wanted = list(dict.fromkeys(event_ids))
    found: dict[UUID, tuple[str, str | None]] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [event_id for event_id in wanted if event_id not in found]
        if waiting:
            with services.engine.connect() as conn:
                for event_id, outcome in event_outcomes(conn, waiting).items():
                    found[event_id] = (outcome.status, outcome.reason)
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return {event_id: found.get(event_id, ("pending", None)) for event_id in wanted}
        time.sleep(0.1)


def wait_outcome(services: Services, event_id: UUID, timeout_s: float = WAIT_S) -> tuple[str, str | None]:
    """What became of one event: ('applied'|'rejected'|'pending', reason)."""
    return wait_outcomes(services, [event_id], timeout_s)[event_id]
