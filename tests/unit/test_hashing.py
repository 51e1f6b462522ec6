import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger.domain import Posting
from ledger.hashing import GENESIS_HASH, canonical_entry, canonical_link, canonical_timestamp, entry_hash, link_hash

FIELDS = dict(
    prev_hash=GENESIS_HASH,
    event_id=uuid.UUID("12345678-1234-4234-8234-123456789abc"),
    kind="hours_approved",
    occurred_at=datetime(2026, 11, 2, 10, 30, tzinfo=UTC),
    recorded_at=datetime(2026, 11, 2, 10, 30, 0, 5, tzinfo=UTC),
    volunteer_id="v1",
    org_id="org1",
    opportunity_id=None,
    related_event_id=None,
    postings=(Posting("volunteer:v1", 150), Posting("issuer:org1", -150)),
)


def test_a_linked_entry_is_encoded_without_a_previous_hash() -> None:
    assert canonical_entry(**{**FIELDS, "prev_hash": None}) == (
        b"3:tc236:12345678-1234-4234-8234-123456789abc14:hours_approved"
        b"27:2026-11-02T10:30:00.000000Z27:2026-11-02T10:30:00.000005Z2:v14:org10:0:"
        b"33:issuer:org1=-150;volunteer:v1=150"
    )
    assert entry_hash(**{**FIELDS, "prev_hash": None}) != entry_hash(**FIELDS)


def test_a_link_covers_its_chain_place_predecessor_and_entries_in_order() -> None:
    a, b = b"\xaa" * 32, b"\xbb" * 32
    assert canonical_link(chain_key="tc.activity/3", seq=7, prev_link=GENESIS_HASH, entry_hashes=[a, b]) == (
        b"4:tcl113:tc.activity/31:764:" + b"0" * 64 + b"1:2128:" + b"aa" * 32 + b"bb" * 32
    )
    base = dict(chain_key="tc.activity/3", seq=7, prev_link=GENESIS_HASH, entry_hashes=[a, b])
    for change in ({"chain_key": "tc.activity/4"}, {"seq": 8}, {"prev_link": a}, {"entry_hashes": [b, a]},
                   {"entry_hashes": [a]}):
        assert link_hash(**{**base, **change}) != link_hash(**base), change


def test_canonical_encoding_is_netstrings_in_a_fixed_order() -> None:
    assert canonical_entry(**FIELDS) == (
        b"3:tc164:" + b"0" * 64 + b"36:12345678-1234-4234-8234-123456789abc14:hours_approved"
        b"27:2026-11-02T10:30:00.000000Z27:2026-11-02T10:30:00.000005Z2:v14:org10:0:"
        b"33:issuer:org1=-150;volunteer:v1=150"
    )


def test_every_field_changes_the_hash() -> None:
    base = entry_hash(**FIELDS)
    changes = {
        "prev_hash": b"\x01" * 32,
        "event_id": uuid.uuid4(),
        "kind": "credits_gifted",
        "occurred_at": FIELDS["occurred_at"] + timedelta(microseconds=1),
        "recorded_at": FIELDS["recorded_at"] + timedelta(seconds=1),
        "volunteer_id": "v2",
        "org_id": "org2",
        "opportunity_id": "x",
        "related_event_id": uuid.uuid4(),
        "postings": (Posting("volunteer:v1", 151), Posting("issuer:org1", -151)),
    }
    for name, value in changes.items():
        assert entry_hash(**{**FIELDS, name: value}) != base, name


def test_posting_order_does_not_matter_but_field_boundaries_do() -> None:
    swapped = {**FIELDS, "postings": tuple(reversed(FIELDS["postings"]))}
    assert entry_hash(**swapped) == entry_hash(**FIELDS)
    shifted = {**FIELDS, "volunteer_id": "v1o", "org_id": "rg1"}
    assert entry_hash(**shifted) != entry_hash(**FIELDS)


def test_timestamps_are_normalised_to_utc_and_must_be_aware() -> None:
    plus_one = datetime(2026, 11, 2, 11, 30, tzinfo=timezone(timedelta(hours=1)))
    assert canonical_timestamp(plus_one) == "2026-11-02T10:30:00.000000Z"
    with pytest.raises(ValueError):
        canonical_timestamp(datetime(2026, 11, 2))
