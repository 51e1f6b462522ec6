"""The token buckets behind the rate limits (api/limits.py), on a clock the test moves."""
from __future__ import annotations

import pytest

from api.limits import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_a_period_and_the_wait_until_the_next() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5)
    assert buckets.wait("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("k") == 0.0
    assert buckets.take("k") == pytest.approx(0.5)


def test_keys_have_buckets_of_their_own_and_refill_only_to_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock)
    assert buckets.take("a") == 0.0 and buckets.take("a") == 0.0 and buckets.take("a") > 0
    assert buckets.take("b") == 0.0
    clock.now += 3600
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a") > 0


def test_waiting_takes_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, clock=Clock())
    assert buckets.wait("k") == 0.0 and buckets.wait("k") == 0.0
    assert buckets.take("k") == 0.0
    assert buckets.wait("k") == pytest.approx(1.0)


def test_the_table_of_keys_stays_bounded() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=10, clock=clock)
    for n in range(100):
        buckets.take(f"k{n}")
    assert len(buckets._buckets) <= 10
    assert buckets.take("k99") > 0  # the most recent key is still remembered
