"""Producing events to Kafka with kafka-python (docs/design.md §2, §4): topic creation and an idempotent producer.

Delivery is at least once; the ledger's unique `event_id` turns that into an exactly-once effect. What this
module adds is that no failure is silent: a record the broker did not acknowledge surfaces as `DeliveryError`
from `publish_and_wait`, `flush` or the context manager's exit.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
    for_code,
)
from kafka.producer.future import FutureRecordMetadata
from kafka.producer.transaction_manager import TransactionState

from ledger.events import (
    EVENT_TYPES,
    TOPIC_ACTIVITY,
    TOPIC_ADMIN,
    TOPIC_LEDGER,
    TOPIC_OF,
    TOPIC_REJECTED,
    Envelope,
    EventPayload,
    encode_envelope,
    encode_event,
)

__all__ = ["ALL_TOPICS", "DeliveryError", "EventProducer", "broker_reachable", "ensure_topics", "prefixed"]

log = logging.getLogger(__name__)

ALL_TOPICS: tuple[str, ...] = (TOPIC_ACTIVITY, TOPIC_ADMIN, TOPIC_LEDGER, TOPIC_REJECTED)



def prefixed(topics: Iterable[str], prefix: str) -> list[str]:
    """Physical topic names: a prefix lets several programmes (or test runs) share one Kafka cluster."""
    return [f"{prefix}{topic}" for topic in topics]


_ADMIN_TIMEOUT_MS = 10_000
_MAX_REMEMBERED_FAILURES = 100
#: After one of these the client's producer state is suspect (see `EventProducer`): it is replaced.
_PRODUCER_STATE_ERRORS = (OutOfOrderSequenceNumberError, UnknownProducerIdError, InvalidProducerEpochError)


def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    topics: Iterable[str] = ALL_TOPICS,
    *,
    timeout_ms: int = _ADMIN_TIMEOUT_MS,
) -> None:
    """Create the topics that do not exist yet (replication factor 1) and wait until the broker's metadata
    lists each with a leader for every partition. Idempotent.

    A topic that already exists keeps its partition count, even when it differs from `partitions`: adding
    partitions would move keys to other partitions and break the per-volunteer order (docs/design.md §4).
    The difference is logged as a warning.
    """
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    names = list(dict.fromkeys(topics))
    if not names:
        return
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="timecredits-topics",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        # The dict form of create_topics: kafka-python 3 deprecates the list of NewTopic objects.
        response = admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1} for name in names},
            timeout_ms=timeout_ms,
            raise_errors=False,
        )
        for topic in response["topics"]:
            error = for_code(topic["error_code"])
            if error is TopicAlreadyExistsError or topic["error_code"] == 0:
                continue
            raise error(f"could not create topic {topic['name']!r}: {topic.get('error_message') or error.__name__}")
        admin.wait_for_topics(names, timeout_ms=timeout_ms)
        for topic in admin.describe_topics(names):
            if len(topic["partitions"]) != partitions:
                log.warning(
                    "topic %s has %d partitions, not the %d requested; left as it is",
                    topic["name"], len(topic["partitions"]), partitions,
                )
    finally:
        admin.close()


def broker_reachable(bootstrap_servers: str | list[str], timeout: float = 1.0) -> bool:
    """Whether one of the bootstrap brokers accepts a TCP connection now."""
    servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else bootstrap_servers
    for server in servers:
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


class DeliveryError(RuntimeError):
    """The broker did not acknowledge one or more events (or could not be reached in time).

    `event_ids` names the events concerned when they are known. Producing them again with the same ids is
    safe: the ledger applies an event id once.
    """

    def __init__(self, message: str, *, event_ids: Iterable[UUID] = ()) -> None:
        super().__init__(message)
        self.event_ids: tuple[UUID, ...] = tuple(event_ids)

    @property
    def event_id(self) -> UUID | None:
        """The (first) event concerned, or None when only raw records failed."""
        return self.event_ids[0] if self.event_ids else None


class EventProducer:
    """kafka-python's `KafkaProducer` with the settings the event pipeline needs, and failures made loud.

    Settings: `acks="all"`, `enable_idempotence=True`, at most 5 requests in flight per connection (the most
    idempotence allows while keeping order), unlimited retries bounded by `delivery_timeout_ms`, `linger_ms=5`.
    Checked against the embedded broker (Tansu 0.6.0, kafka-python 3.0.12): it grants producer ids
    (`InitProducerId`, a distinct id per producer), drops a batch whose sequence number it has already
    written (a retried batch is not duplicated; it acknowledges it with offset -1) and refuses a sequence gap
    with `OutOfOrderSequenceNumber`. So idempotence stays on, as with Apache Kafka.

    One difference: after a sequence error kafka-python tries to bump the producer epoch (KIP-360, an
    `InitProducerId` carrying the current id), which Tansu answers with an unknown error; the client is then
    in a fatal state and refuses every later send. The failed events surface as `DeliveryError`, and the next
    send after a producer-state error (or in a fatal state) goes through a fresh client with a new producer
    id, so a long-running API does not stay wedged. Records the old client still held fail and are reported.

    A second workaround: kafka-python 3.0.12 does not pass `allow_auto_create_topics` on to its metadata
    requests, and Tansu (like Kafka by default) then creates an unknown topic with its default partition
    count. Topics are created by `ensure_topics` only, so the setting is applied to the client's metadata.

    Sends are asynchronous. Failures of `publish`/`send_envelope`/`send_raw` records are remembered and raised
    by the next `flush()`; `publish_and_wait` raises its own failure at once. Thread-safe, like `KafkaProducer`.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "timecredits-producer",
        linger_ms: int = 5,
        request_timeout_ms: int = 10_000,
        delivery_timeout_ms: int = 30_000,
        max_block_ms: int = 10_000,
        bootstrap_timeout_ms: int = 10_000,
        topic_prefix: str = "",
        **overrides: Any,
    ) -> None:
        self._topic_prefix = topic_prefix
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "max_in_flight_requests_per_connection": 5,
            "retries": 2_147_483_647,  # bounded in time by delivery_timeout_ms, as Kafka recommends
            "linger_ms": linger_ms,
            "request_timeout_ms": request_timeout_ms,
            "delivery_timeout_ms": max(delivery_timeout_ms, request_timeout_ms + linger_ms),
            "max_block_ms": max_block_ms,  # how long send() may wait for metadata or buffer space
            "bootstrap_timeout_ms": bootstrap_timeout_ms,
            "allow_auto_create_topics": False,
            **overrides,
        }
        self._lock = threading.Lock()  # failures and the replace flag; also taken by errbacks
        self._client_lock = threading.Lock()  # the client, its retired predecessors, closing
        self._retired: list[KafkaProducer] = []
        self._failures: list[tuple[UUID | None, BaseException]] = []
        self._failure_count = 0
        self._replace_client = False
        self._closed = False
        self._client = self._new_client()

    @classmethod
    def from_settings(cls, bootstrap_servers: str | None = None, **options: Any) -> EventProducer:
        """A producer for `bootstrap_servers`, or for `KAFKA_BOOTSTRAP_SERVERS` from the settings when None.

        The embedded broker has no fixed address: whoever starts it (`infra.services.running_services`)
        passes its `bootstrap_servers` here.
        """
        if bootstrap_servers is None:
            from timecredits.settings import get_settings

            bootstrap_servers = get_settings().kafka_bootstrap_servers
        if not bootstrap_servers:
            raise ValueError(
                "no Kafka bootstrap servers: set KAFKA_BOOTSTRAP_SERVERS or pass the embedded broker's address"
            )
        return cls(bootstrap_servers, **options)

    # -- producing ----------------------------------------------------------------------------
    def publish(
        self,
        payload: EventPayload,
        *,
        actor: str,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        """Wrap `payload` in a new envelope and send it to its topic, keyed by its partition key.

        Raises `ValueError` for an event `decode_event` would refuse, `DeliveryError` when the record
        cannot even be queued (broker unreachable within `max_block_ms`). Delivery failures come from `flush()`.
        """
        envelope, value = encode_event(payload, actor=actor, event_id=event_id, occurred_at=occurred_at)
        self._send(
            self._topic_prefix + payload.topic, payload.partition_key.encode("utf-8"), value, envelope.event_id,
            remember=True,
        )
        return envelope

    def publish_and_wait(
        self,
        payload: EventPayload,
        *,
        actor: str,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
        timeout: float = 10.0,
    ) -> Envelope:
        """`publish`, then wait up to `timeout` seconds for the broker's acknowledgement.

        Raises `DeliveryError` (with the event id) when it does not come; the event may still arrive later,
        which is harmless: the ledger applies an event id once.
        """
        envelope, value = encode_event(payload, actor=actor, event_id=event_id, occurred_at=occurred_at)
        future = self._send(
            self._topic_prefix + payload.topic, payload.partition_key.encode("utf-8"), value, envelope.event_id,
            remember=False,
        )
        self._wait(future, envelope.event_id, timeout)
        return envelope

    def send_envelope(self, envelope: Envelope) -> FutureRecordMetadata:
        """Send an envelope built elsewhere (for instance re-sending a stored event). Its payload is validated
        against its model to find the topic and the key."""
        model = EVENT_TYPES.get((envelope.type, envelope.version))
        if model is None:
            raise ValueError(f"no event type {envelope.type!r} version {envelope.version}")
        payload = model.model_validate(envelope.payload)
        assert isinstance(payload, EventPayload)
        return self._send(
            self._topic_prefix + TOPIC_OF[envelope.type],
            payload.partition_key.encode("utf-8"),
            encode_envelope(envelope),
            envelope.event_id,
            remember=True,
        )

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> FutureRecordMetadata:
        """Send bytes as they are (tests inject poison messages with it; dead letters keep original bytes)."""
        return self._send(topic, key, value, None, remember=True)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every record sent so far is acknowledged or failed.

        Raises `DeliveryError` when records are still pending after `timeout` seconds, or when any record sent
        since the previous `flush()` failed (then the failures are forgotten: each is reported once).
        """
        with self._client_lock:
            clients = [*self._retired, self._client]
        for client in clients:
            try:
                client.flush(timeout=timeout)
            except KafkaTimeoutError as exc:
                raise DeliveryError(
                    f"the broker did not acknowledge every event within {timeout} s ({exc})",
                    event_ids=self._take_failures()[0],
                ) from exc
        self._close_retired(clients[:-1])
        event_ids, count, first = self._take_failures()
        if count:
            raise DeliveryError(
                f"{count} event(s) were not delivered; first error: {_describe(first)}", event_ids=event_ids
            ) from first

    def connected(self, timeout: float = 1.0) -> bool:
        """Whether a bootstrap broker accepts a connection now (for readiness checks; cheap, no Kafka request)."""
        return broker_reachable(self._config["bootstrap_servers"], timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to `timeout` seconds) and release the connections. Idempotent.
        Records still unsent then are dropped: call `flush()` first to be told about them."""
        with self._client_lock:
            if self._closed:
                return
            self._closed = True
            clients, self._retired = [*self._retired, self._client], []
        for client in clients:
            _close_client(client, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Flush (raising `DeliveryError`) and close; after an exception in the body, only close."""
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()

    # -- internals ------------------------------------------------------------------------------
    def _new_client(self) -> KafkaProducer:
        try:
            client = KafkaProducer(**self._config)
        except KafkaTimeoutError as exc:
            raise DeliveryError(f"no Kafka broker answered at {self._config['bootstrap_servers']}: {exc}") from exc
        metadata = getattr(client, "_metadata", None)  # see the class docstring
        if metadata is not None and "allow_auto_create_topics" in getattr(metadata, "config", {}):
            metadata.config["allow_auto_create_topics"] = self._config["allow_auto_create_topics"]
        return client

    def _usable_client(self) -> KafkaProducer:
        """The client, replaced by a new one after a producer-state error. The old one is retired, not closed:
        what it still holds is delivered or fails, and `flush()` waits for it and reports it."""
        with self._client_lock:  # never taken by the errbacks, which run on a client's sender thread
            if self._closed:
                raise RuntimeError("the producer is closed")
            with self._lock:
                replace = self._replace_client
            if replace or _in_fatal_state(self._client):
                log.warning("Kafka producer state lost (sequence error, fatal error or no producer id); replacing the client")
                client = self._new_client()  # raises while no broker answers: the flag and the old client stay
                with self._lock:
                    self._replace_client = False
                self._retired.append(self._client)
                self._client = client
            return self._client

    def _close_retired(self, flushed: list[KafkaProducer]) -> None:
        if not flushed:
            return
        with self._client_lock:
            self._retired = [client for client in self._retired if client not in flushed]
        for client in flushed:
            _close_client(client, 0)

    def _send(
        self, topic: str, key: bytes | None, value: bytes, event_id: UUID | None, *, remember: bool
    ) -> FutureRecordMetadata:
        client = self._usable_client()
        try:
            future: FutureRecordMetadata = client.send(topic, key=key, value=value)
        except KafkaError as exc:
            raise DeliveryError(f"event {event_id or '(raw)'} could not be sent to {topic}: {_describe(exc)}",
                                event_ids=[event_id] if event_id else []) from exc
        future.add_errback(self._on_failure, event_id, remember)
        return future

    def _on_failure(self, event_id: UUID | None, remember: bool, exc: BaseException) -> None:
        with self._lock:
            if isinstance(exc, _PRODUCER_STATE_ERRORS):
                self._replace_client = True
            if remember:
                self._failure_count += 1
                if len(self._failures) < _MAX_REMEMBERED_FAILURES:
                    self._failures.append((event_id, exc))

    def _take_failures(self) -> tuple[list[UUID], int, BaseException | None]:
        with self._lock:
            failures, count = self._failures, self._failure_count
            self._failures, self._failure_count = [], 0
        event_ids = [event_id for event_id, _ in failures if event_id is not None]
        return event_ids, count, failures[0][1] if failures else None

    def _wait(self, future: FutureRecordMetadata, event_id: UUID, timeout: float) -> None:
        try:
            future.get(timeout=timeout)
        except KafkaError as exc:
            if isinstance(exc, _PRODUCER_STATE_ERRORS):  # the errback may not have run yet
                with self._lock:
                    self._replace_client = True
            if isinstance(exc, KafkaTimeoutError) and not future.is_done:
                message = f"event {event_id} was not acknowledged within {timeout} s"
            else:
                message = f"event {event_id} was not delivered: {_describe(exc)}"
            raise DeliveryError(message, event_ids=[event_id]) from exc


def _close_client(client: KafkaProducer, timeout: float) -> None:
    """`KafkaProducer.close`, which gives up (raising) before forcing when records are still pending."""
    try:
        client.close(timeout=timeout)
    except KafkaError as exc:
        log.warning("closing the Kafka producer dropped unsent records: %s", exc)
        sender = getattr(client, "_sender", None)
        if sender is not None:
            sender.force_close()  # fails what is left; the errbacks record it


def _in_fatal_state(client: KafkaProducer) -> bool:
    """Whether the client will never send again: a fatal error, or an idempotent producer left without an id.

    The second is kafka-python 3.0.12: when a batch that was already sent expires (a broker that stopped
    answering), the client drops its producer id to ask for a new one, but stays READY, and only asks from
    UNINITIALIZED; it then waits for an id forever, and every later send times out, also once the broker is back.
    """
    manager = getattr(client, "_transaction_manager", None)
    if manager is None:
        return False
    if manager.has_fatal_error():
        return True
    return (not manager.is_transactional() and not manager.has_producer_id()
            and getattr(manager, "_current_state", None) == TransactionState.READY)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name
