"""The benchmark's own pieces: a workload every worker accepts, the same every run, and its percentiles."""
from __future__ import annotations

from collections import Counter

from ledger.events import DecodedEvent, check_key, decode_event
from timecredits.benchmark import workload
from timecredits.benchmark.httpload import percentile


def test_the_workload_is_the_same_every_run_and_keyed_as_a_worker_requires() -> None:
    first = list(workload.activity(3_000, 200, seed=6))
    again = list(workload.activity(3_000, 200, seed=6))
    assert [r.value for r in first] == [r.value for r in again]
    assert len(first) == 3_000 and len({r.event_id for r in first}) == 3_000
    members = workload.memberships([workload.volunteer_id(n) for n in range(200)])
    for record in [*workload.registry(200), *members, *first, *workload.probe_registry(5)]:
        item = check_key(decode_event(record.value), record.key)
        assert isinstance(item, DecodedEvent), item
        assert item.event_id == record.event_id
    kinds = Counter(decode_event(r.value).type for r in first)  # type: ignore[union-attr]
    assert kinds["HoursLogged"] > kinds["CreditsRedeemed"] > kinds["CreditsGifted"] > 0
    assert kinds["OpportunityBooked"] > 0 and kinds["BookingAttended"] > 0
    member_of = {(p["org_id"], p["volunteer_id"]) for p in (decode_event(r.value).payload.__dict__ for r in members)}  # type: ignore[union-attr]
    logged = {(e.payload.org_id, e.payload.volunteer_id) for e in map(decode_event, (r.value for r in first))  # type: ignore[union-attr]
              if e.type == "HoursLogged"}
    assert logged <= member_of  # every hour is logged by an organisation the volunteer is a member of


def test_percentiles_by_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 99) == 0.0
