"""A flood of 100,000 malformed records among valid events on tc.activity.

Every kind of malformed record goes to `tc.rejected` exactly once with the reason its kind calls for, the valid
events make the clean ledger (`_reference`: the same events in one pass straight into a fresh database), the
worker carries on, and `timecredits verify` passes. No timed assertions: the durations are printed.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import text

from consumers.publishing import BatchPublisher
from ledger.events import TOPIC_ACTIVITY, TOPIC_REJECTED, CreditsRedeemed, decode_event, encode_event
from ledger.pg.processing import EventProcessor
from tests.e2e.conftest import Stack
from tests.e2e.faults import wait_for_exit_or
from tests.e2e.stack import decided_count, ledger_summary
from tests.e2e.test_faults import VOLUNTEERS, _backlog, _event_ids, _reference, _registry, _verify_cli

pytestmark = [pytest.mark.broker, pytest.mark.integration, pytest.mark.fault]

MALFORMED = 100_000
VALID = 10_000

#: (key, value); a value of None is a tombstone.
Record = tuple[bytes | None, bytes | None]


def _envelope(rng: random.Random, n: int, type_: str, payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An envelope whose bytes are unique (the actor carries `n`), so its dead letter can be told apart."""
    return {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "type": type_, "version": 1,
            "occurred_at": "2026-11-02T10:00:00Z", "actor": f"flood-{n}", "payload": payload, **changes}


def _redeem(volunteer: str, amount: Any = 100) -> dict[str, Any]:
    return {"volunteer_id": volunteer, "partner_id": "lido", "amount": amount}


def _hours(volunteer: str, **changes: Any) -> dict[str, Any]:
    return {"volunteer_id": volunteer, "org_id": "club", "date": "2026-11-01", "minutes": 60, "activity": "shift",
            **changes}


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _malformed(count: int, seed: int) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, the reason its dead letter must give): every way a record on tc.activity can be wrong."""
    rng = random.Random(seed)
    makers: list[tuple[str, Any]] = [
        ("undecodable", lambda n, v: b"\xff\xfe\x00" + n.to_bytes(4, "big") + rng.randbytes(16)),  # not UTF-8
        ("undecodable", lambda n, v: f'{{"event_id": "{n}", "type": '.encode()),  # JSON cut short
        ("undecodable", lambda n, v: _json([n, "CreditsRedeemed", v])),  # JSON, but not an object
        ("undecodable", lambda n, v: f'{{"n": {n}, "amount": NaN}}'.encode()),
        ("undecodable", lambda n, v: f'{{"n": {n}, "type": "CreditsRedeemed", "type": "HoursLogged"}}'.encode()),
        ("undecodable", lambda n, v: f'{{"n": {n}, "amount": {"9" * 5_000}}}'.encode()),  # an integer too long
        ("undecodable", lambda n, v: ("[" * 3_000 + str(n) + "]" * 3_000).encode()),  # nested too deeply
        ("invalid_envelope", lambda n, v: _json({k: x for k, x in _envelope(rng, n, "CreditsRedeemed", _redeem(v))
                                                 .items() if k != "actor"} | {"n": n})),
        ("invalid_envelope", lambda n, v: _json(_envelope(rng, n, "CreditsRedeemed", _redeem(v),
                                                          occurred_at="2026-11-02T10:00:00"))),  # no UTC offset
        ("unknown_type", lambda n, v: _json(_envelope(rng, n, "CreditsStolen", _redeem(v)))),
        ("unknown_version", lambda n, v: _json(_envelope(rng, n, "CreditsRedeemed", _redeem(v), version=7))),
        ("invalid_payload", lambda n, v: _json(_envelope(rng, n, "CreditsRedeemed", _redeem(v, -100)))),
        ("invalid_payload", lambda n, v: _json(_envelope(rng, n, "CreditsRedeemed", _redeem(v, 1.5)))),
        ("invalid_payload", lambda n, v: _json(_envelope(rng, n, "CreditsRedeemed", _redeem(v, 10**30)))),
        ("invalid_payload", lambda n, v: _json(_envelope(rng, n, "CreditsGifted", {
            "from_volunteer_id": v, "to_volunteer_id": v, "amount": 100}))),
        ("invalid_payload", lambda n, v: _json(_envelope(rng, n, "HoursLogged", _hours(v, date="2031-01-01")))),
        ("invalid_payload", lambda n, v: _json(_envelope(rng, n, "HoursLogged", _hours(v, activity="a\x01b")))),
        ("invalid_payload", lambda n, v: _json(_envelope(rng, n, "HoursLogged", _hours(v, minutes=10**12)))),
    ]
    records: list[tuple[bytes | None, bytes | None, str]] = []
    for n in range(count):
        volunteer = rng.choice(VOLUNTEERS)
        key = volunteer.encode() if rng.random() < 0.9 else None
        if n % 300 == 7:  # a few large ones: over the 64 KiB limit, refused unread
            records.append((key, _json(_envelope(rng, n, "HoursLogged", _hours(volunteer, activity="x" * 70_000))),
                            "undecodable"))
        elif n % 150 == 11:
            records.append((key, None if n % 300 == 11 else b"", "undecodable"))  # a tombstone, an empty value
        elif n % 50 == 13:  # a valid event on another volunteer's key: it would overtake its volunteer's events
            other = rng.choice([v for v in VOLUNTEERS if v != volunteer])
            _, raw = encode_event(CreditsRedeemed(volunteer_id=volunteer, partner_id="lido", amount=50),
                                  actor=f"flood-{n}", event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                                  occurred_at=datetime(2026, 11, 2, tzinfo=UTC))
            records.append((other.encode() if n % 100 == 13 else None, raw, "wrong_key"))
        else:
            reason, make = makers[n % len(makers)]
            records.append((key, make(n, volunteer), reason))
    return records


def _interleave(valid: list[Any], others: list[Any], seed: int) -> list[Any]:
    """`others` spread at random among `valid`, each list keeping its own order."""
    slots = [True] * len(valid) + [False] * len(others)
    random.Random(seed).shuffle(slots)
    valid_it, other_it = iter(valid), iter(others)
    return [next(valid_it) if is_valid else next(other_it) for is_valid in slots]


def _produce_fast(stack: Stack, records: list[Record]) -> None:
    """Raw bytes, a Kafka record batch a partition per call, as the worker publishes its own results
    (consumers.publishing): one `send()` a record would make the producer, not the worker, what the test waits on.
    Each key keeps its order: a partition's batches go out in order, and each call waits for the one before."""
    async def produce() -> None:
        publisher = BatchPublisher(stack.bootstrap, "flood-producer", linger_ms=20)
        await publisher.start()
        try:
            for start in range(0, len(records), 5_000):
                await publisher.publish(stack.topic(TOPIC_ACTIVITY),
                                        records[start:start + 5_000])  # type: ignore[arg-type]  # tombstones too
        finally:
            await publisher.stop()

    asyncio.run(produce())


def _digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


#: A dead letter as the test compares it: (source partition and offset, reason, digest of the original, event id).
Letter = tuple[tuple[int, int], str, bytes, str | None]


def _read_dead_letters(stack: Stack, expected: int, timeout: float) -> list[Letter]:
    """Every dead letter on the stack's `tc.rejected`, read to the topic's end until at least `expected` have come
    or `timeout` has passed; the originals kept as digests (the flood's letters carry over 100 MB of them).

    A last read to the end, two seconds later, would bring any letter published twice."""
    topic = stack.topic(TOPIC_REJECTED)
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_bytes=32 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    letters: list[Letter] = []

    def read_to_end() -> None:
        ends = consumer.end_offsets(partitions)
        while any(consumer.position(p) < ends[p] for p in partitions):
            for batch in consumer.poll(timeout_ms=1000, max_records=20_000).values():
                for message in batch:
                    letter = json.loads(message.value)
                    assert letter["source"]["topic"] == stack.topic(TOPIC_ACTIVITY), letter["source"]
                    assert letter["reason"] and letter["message"] and letter["rejected_at"], letter
                    letters.append(((letter["source"]["partition"], letter["source"]["offset"]), letter["reason"],
                                    _digest(base64.b64decode(letter["original"])), letter["event_id"]))

    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while len(letters) < expected and time.monotonic() < deadline:
            read_to_end()
            time.sleep(0.5)
        time.sleep(2)
        read_to_end()
    finally:
        consumer.close()
    return letters


def test_a_flood_of_100000_malformed_records_is_dead_lettered_once_each_and_the_valid_events_apply(
    stack: Stack, embedded_postgres: str, primary_template: str
) -> None:
    """100,000 malformed records of every kind among 10,000 valid events on the same keys: each malformed one is
    exactly one dead letter with the reason its kind calls for, the valid ones make the clean ledger, the worker
    carries on."""
    EventProcessor(stack.engine).process(_registry())
    valid = _backlog(VALID, seed=23)
    malformed = _malformed(MALFORMED, seed=24)
    flood = _interleave(valid, [(key, value) for key, value, _ in malformed], seed=25)
    worker = stack.start_worker()
    started = time.monotonic()
    _produce_fast(stack, flood)
    produced = time.monotonic()

    ids = _event_ids(valid)
    with_ids = [item.event_id for _, value, _ in malformed if (item := decode_event(value or b"")).event_id]
    wait_for_exit_or(lambda: decided_count(stack.engine, ids + with_ids) == len(ids) + len(with_ids), worker, 600,
                     "the worker to decide every event with an id")
    decided = time.monotonic()
    with stack.engine.connect() as conn:  # valid events refused by the ledger's rules are dead letters too
        refused = dict(conn.execute(text("SELECT event_id::text, reason FROM rejections "
                                         "WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
                                    {"ids": [str(i) for i in ids]}).all())
    letters = _read_dead_letters(stack, len(malformed) + len(refused), timeout=300)
    read = time.monotonic()

    sources = Counter(source for source, _, _, _ in letters)
    assert [s for s, n in sources.items() if n > 1] == [], "a record was dead-lettered more than once"
    assert len(letters) == len(malformed) + len(refused)
    valid_digests = {_digest(value) for _, value in valid}
    expected: Counter[tuple[bytes, str]] = Counter((_digest(value or b""), reason) for _, value, reason in malformed)
    found: Counter[tuple[bytes, str]] = Counter()
    for _, reason, digest, event_id in letters:
        if digest in valid_digests:
            assert reason == refused.get(event_id or ""), (event_id, reason)
        else:
            found[(digest, reason)] += 1
    assert found == expected, {
        "missing": sorted(Counter(r for _, r in (expected - found).elements()).items()),
        "unexpected": sorted(Counter(r for _, r in (found - expected).elements()).items()),
    }

    assert worker.alive, f"the worker crashed on a malformed record:\n{worker.log_tail()}"
    # The reference gets the valid events in their order (the malformed ones only add rejections, whatever their
    # place); it sees no keys, so the wrong-key refusals are added to it.
    reference = _reference(embedded_postgres, primary_template,
                           [(key, value) for key, value, reason in malformed if reason != "wrong_key"] + valid)
    wrong_keys = sum(reason == "wrong_key" for _, _, reason in malformed)
    reference["rejections"]["wrong_key"] = wrong_keys  # type: ignore[index]
    assert ledger_summary(stack.engine) == reference
    verified = _verify_cli(stack.database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(f"\n{len(flood):,} records produced in {produced - started:.1f} s; every event with an id decided "
          f"{decided - started:.1f} s after the first send; {len(letters):,} dead letters read in "
          f"{read - decided:.1f} s; checked {time.monotonic() - read:.1f} s")
