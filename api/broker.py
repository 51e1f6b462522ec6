"""The API's link to Kafka: a producer made on first use, so the API starts, and answers 503, while the broker
is down, and a broker that comes back is used without a restart."""
from __future__ import annotations

import threading
from typing import Any

from ledger.events import Envelope, EventPayload
from producers.kafka import DeliveryError, EventProducer, broker_reachable


class BrokerLink:
    def __init__(self, bootstrap_servers: str, *, topic_prefix: str = "", timeout_s: float = 5.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._topic_prefix = topic_prefix
        self._timeout_ms = int(timeout_s * 1000)
        self._lock = threading.Lock()
        self._producer: EventProducer | None = None

    def producer(self) -> EventProducer:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = EventProducer(
                        self.bootstrap_servers, topic_prefix=self._topic_prefix, client_id="timecredits-api",
                        request_timeout_ms=self._timeout_ms, max_block_ms=self._timeout_ms,
                        bootstrap_timeout_ms=self._timeout_ms, delivery_timeout_ms=2 * self._timeout_ms,
                    )
                except DeliveryError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure to reach the broker is the same to a caller
                    raise DeliveryError(f"no Kafka broker answered at {self.bootstrap_servers}: {exc}") from exc
            return self._producer

    def publish_and_wait(self, payload: EventPayload, **options: Any) -> Envelope:
        return self.producer().publish_and_wait(payload, **options)

    def connected(self) -> bool:
        return broker_reachable(self.bootstrap_servers)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None
