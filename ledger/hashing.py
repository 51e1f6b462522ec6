"""The SHA-256 hash chain over entries (docs/design.md §3, invariant 5).

Each entry's hash covers the previous entry's hash and a canonical encoding of the entry and its
postings. The encoding is a sequence of netstrings (`len:text`), so no field can bleed into the next,
and it is simple enough that the database computes the very same bytes in SQL (`tc_canonical`, migration
0005) and refuses an entry whose hash does not match.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from uuid import UUID

from ledger.domain import Posting

GENESIS_HASH = bytes(32)
ENCODING_VERSION = "tc1"


@lru_cache(maxsize=256)  # a batch's entries share one recorded_at
def canonical_timestamp(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, as the database's `to_char` writes it: the year always four digits
    (`strftime("%Y")` would write 999 for 0999, and the database would refuse such an entry's hash)."""
    if moment.tzinfo is None:
        raise ValueError("ledger timestamps must carry a time zone")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _netstring(text: str) -> str:
    return f"{len(text)}:{text}"


def canonical_postings(postings: Iterable[Posting]) -> str:
    ordered = sorted(postings, key=lambda p: (p.account, p.amount))
    return ";".join(f"{p.account}={p.amount}" for p in ordered)


def canonical_entry(
    *,
    prev_hash: bytes,
    event_id: UUID,
    kind: str,
    occurred_at: datetime,
    recorded_at: datetime,
    volunteer_id: str | None,
    org_id: str | None,
    opportunity_id: str | None,
    related_event_id: UUID | None,
    postings: Iterable[Posting],
) -> bytes:
    fields = (
        ENCODING_VERSION,
        prev_hash.hex(),
        str(event_id),
        kind,
        canonical_timestamp(occurred_at),
        canonical_timestamp(recorded_at),
        volunteer_id or "",
        org_id or "",
        opportunity_id or "",
        str(related_event_id) if related_event_id else "",
        canonical_postings(postings),
    )
    return "".join(_netstring(field) for field in fields).encode("utf-8")


def entry_hash(**fields: object) -> bytes:
    return hashlib.sha256(canonical_entry(**fields)).digest()  # type: ignore[arg-type]
