"""Tamper evidence: a SHA-256 hash of each entry, and a hash chain of batch links per chain (docs/design.md §3).

An entry's hash covers a canonical encoding of the entry and its postings. Entries are chained a committed batch
at a time: each chain (one per Kafka partition the ledger consumes) is a sequence of links, each link covering
the hashes of the entries one batch wrote on that chain and the link before it. Workers on different partitions
extend different chains and never wait for each other.

The encodings are sequences of netstrings (`len:text`), so no field can bleed into the next, and simple enough
that the database computes the very same bytes in SQL (`tc_canonical` and `tc_link_canonical` in the
migrations) and refuses an entry or a link whose hash does not match.

Ledgers written before chains per partition form one chain of entries (`tc1`: each entry's hash also covers the
previous entry's hash); they stay verifiable as the first segment of the ledger.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from uuid import UUID

from ledger.domain import Posting

GENESIS_HASH = bytes(32)
#: Entries that belong to a batch link: the hash covers the entry alone.
ENCODING_VERSION = "tc2"
#: Entries of the single chain written before chains per partition: the hash also covers the previous entry's.
LEGACY_ENCODING_VERSION = "tc1"
LINK_ENCODING_VERSION = "tcl1"


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
    """`account=amount` joined by `;`, in (account, amount) order: the order the database's string_agg uses."""
    pairs = sorted([(p.account, p.amount) for p in postings])
    return ";".join([f"{account}={amount}" for account, amount in pairs])


def canonical_entry(
    *,
    prev_hash: bytes | None,
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
    """`prev_hash` None: an entry of a batch link (`tc2`); bytes: an entry of the legacy chain (`tc1`)."""
    head = (f"3:{ENCODING_VERSION}" if prev_hash is None else f"3:{LEGACY_ENCODING_VERSION}64:{prev_hash.hex()}")
    occurred, recorded = canonical_timestamp(occurred_at), canonical_timestamp(recorded_at)
    volunteer, org, opportunity = volunteer_id or "", org_id or "", opportunity_id or ""
    related = f"36:{related_event_id}" if related_event_id else "0:"
    body = canonical_postings(postings)
    # One format a field, as netstrings (`len:text`); an event id is always 36 characters.
    return (f"{head}36:{event_id}{len(kind)}:{kind}{len(occurred)}:{occurred}{len(recorded)}:{recorded}"
            f"{len(volunteer)}:{volunteer}{len(org)}:{org}{len(opportunity)}:{opportunity}{related}"
            f"{len(body)}:{body}").encode("utf-8")


def entry_hash(**fields: object) -> bytes:
    return hashlib.sha256(canonical_entry(**fields)).digest()  # type: ignore[arg-type]


def canonical_link(*, chain_key: str, seq: int, prev_link: bytes, entry_hashes: Sequence[bytes]) -> bytes:
    """A batch link: its chain, its place in it, the link before it, and its entries' hashes in entry-id order."""
    fields = (
        LINK_ENCODING_VERSION,
        chain_key,
        str(seq),
        prev_link.hex(),
        str(len(entry_hashes)),
        b"".join(entry_hashes).hex(),
    )
    return "".join([_netstring(field) for field in fields]).encode("utf-8")


def link_hash(*, chain_key: str, seq: int, prev_link: bytes, entry_hashes: Sequence[bytes]) -> bytes:
    return hashlib.sha256(
        canonical_link(chain_key=chain_key, seq=seq, prev_link=prev_link, entry_hashes=entry_hashes)
    ).digest()
