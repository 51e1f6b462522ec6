"""Recompute every entry hash, every batch link and every balance (docs/design.md §3.3, "The hash chain"), then
run the checks of the ledger's rules (`ledger/pg/verify_checks.py`), all in one snapshot of the database.

Reads the ledger as a stream: first the legacy segment (entries written before chains per partition, each naming
the hash of the one before it), then the linked entries link by link. Stops at the first mismatch and names it.
The heads it reports can be exported to a file kept outside the database and checked against later: a rewrite
of a chain's whole tail, which a chain alone cannot reveal, no longer contains the exported head.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from ledger.pg import schema
from ledger.pg.verify_checks import CHECKS, CheckResult
from ledger.accounts import NON_NEGATIVE_KINDS, split_account_key
from ledger.domain import Posting
from ledger.hashing import GENESIS_HASH, entry_hash, link_hash

HEADS_FORMAT = "timecredits-heads-1"


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    link: bytes


@dataclass(frozen=True, slots=True)
class LegacyHead:
    entries: int
    head: bytes


@dataclass
class VerifyReport:
    entries_checked: int = 0
    postings_checked: int = 0
    links_checked: int = 0
    checkpoints_checked: int = 0
    accounts_checked: int = 0
    legacy: LegacyHead = field(default_factory=lambda: LegacyHead(0, GENESIS_HASH))
    heads: dict[str, ChainHead] = field(default_factory=dict)
    #: The first mismatch of the hash chain, the checkpoints, the balances or the exported heads.
    problem: str | None = None
    #: The checks of the ledger's rules, in the order they ran.
    checks: list[CheckResult] = field(default_factory=list)
    #: How long the hash chain and the balances took; each check's own time is in its result.
    chain_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None and all(check.ok for check in self.checks)

    def results(self) -> dict[str, bool]:
        """Each check's name and whether it passed, the hash chain first (`HASH_CHAIN`)."""
        return {HASH_CHAIN: self.problem is None, **{check.name: check.ok for check in self.checks}}


#: The name of the first check: every hash, link, checkpoint and balance (and the exported heads, when given).
HASH_CHAIN = "hash_chain"


@dataclass(frozen=True, slots=True)
class ExportedHeads:
    """Heads as exported by `timecredits verify --export-heads`."""

    legacy: LegacyHead
    chains: dict[str, ChainHead]

    def to_json(self) -> str:
        return json.dumps({
            "format": HEADS_FORMAT,
            "exported_at": datetime.now(UTC).isoformat(),
            "legacy": {"entries": self.legacy.entries, "head": self.legacy.head.hex()},
            "chains": {key: {"seq": head.seq, "link": head.link.hex()} for key, head in sorted(self.chains.items())},
        }, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ExportedHeads:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != HEADS_FORMAT:
            raise ValueError(f"not a heads file (expected format {HEADS_FORMAT!r})")
        legacy = data["legacy"]
        return cls(
            LegacyHead(int(legacy["entries"]), bytes.fromhex(legacy["head"])),
            {str(key): ChainHead(int(head["seq"]), bytes.fromhex(head["link"])) for key, head in data["chains"].items()},
        )

    @classmethod
    def read(cls, path: Path) -> ExportedHeads:
        return cls.from_json(path.read_text())


def verify_ledger(engine: Engine, on_entries: Callable[[int], None] | None = None,
                  expected: ExportedHeads | None = None) -> VerifyReport:
    """Check every entry, every link of every chain, every checkpoint, then every stored balance against the
    postings; with `expected`, also that every exported head is still in its chain; then run each of `CHECKS`."""
    report = VerifyReport()
    started = time.perf_counter()
    computed: defaultdict[str, int] = defaultdict(int)

    def count(entry: _StoredEntry) -> None:
        for posting in entry.postings:
            computed[posting.account] += posting.amount
        report.entries_checked += 1
        report.postings_checked += len(entry.postings)
        if on_entries and report.entries_checked % 10_000 == 0:
            on_entries(report.entries_checked)

    links: dict[tuple[str, int], bytes] = {}
    # One snapshot for everything: the balances read after the stream, and the checks after them, see the
    # ledger as the stream saw it, however much the workers write meanwhile.
    with engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True) as conn:
        report.problem = (_check_legacy(conn, report, count) or _check_chains(conn, report, count, links)
                          or _check_checkpoints(conn, report))
        if report.problem is None:
            b = schema.balances
            stored = dict(conn.execute(select(b.c.account_key, b.c.balance)).all())
            report.problem = _balance_problem(report, stored, computed)
        if report.problem is None and expected is not None:
            report.problem = _heads_problem(report, expected, links)
        report.chain_seconds = time.perf_counter() - started
        for check in CHECKS:
            began = time.perf_counter()
            result = check(conn)
            report.checks.append(replace(result, seconds=time.perf_counter() - began))
    return report


def _check_legacy(conn: Connection, report: VerifyReport, count: Callable[[_StoredEntry], None]) -> str | None:
    head, entries = GENESIS_HASH, 0
    for entry in _entries(conn, linked=False):
        name = f"entry {entry.id} (event {entry.event_id})"
        if entry.prev_hash is None or bytes(entry.prev_hash) != head:
            return f"{name}: prev_hash does not match the hash of the entry before it"
        problem = _entry_problem(entry, name, prev_hash=head)
        if problem:
            return problem
        head, entries = bytes(entry.hash), entries + 1
        count(entry)
    report.legacy = LegacyHead(entries, head)
    return None


@dataclass(frozen=True, slots=True)
class _Link:
    id: int
    chain_key: str
    seq: int
    prev_link: bytes
    link: bytes
    entry_count: int

    @property
    def name(self) -> str:
        return f"link {self.id} (chain {self.chain_key}, seq {self.seq})"


def _check_chains(conn: Connection, report: VerifyReport, count: Callable[[_StoredEntry], None],
                  links_by_seq: dict[tuple[str, int], bytes]) -> str | None:
    l = schema.chain_links
    links = {
        row[0]: _Link(row[0], row[1], row[2], bytes(row[3]), bytes(row[4]), row[5])
        for row in conn.execute(select(l.c.id, l.c.chain_key, l.c.seq, l.c.prev_link, l.c.link, l.c.entry_count)
                                .order_by(l.c.chain_key, l.c.seq))
    }
    # The chains first: each link follows the one before it, from seq 1, without a gap.
    for chain_key, chain in groupby(links.values(), key=lambda link: link.chain_key):
        prev_link, seq = GENESIS_HASH, 0
        for link in chain:
            if link.seq != seq + 1:
                return f"chain {chain_key}: link seq {seq + 1} is missing (a batch was deleted) before {link.name}"
            if link.prev_link != prev_link:
                return f"{link.name}: does not follow the link before it"
            prev_link, seq = link.link, link.seq
            links_by_seq[(chain_key, seq)] = link.link
        report.heads[chain_key] = ChainHead(seq, prev_link)
    # Then each link's entries, in link and id order: their hashes, and the link over them.
    seen: set[int] = set()
    for link_id, group in groupby(_entries(conn, linked=True), key=lambda entry: entry.link_id):
        found = links.get(link_id) if link_id is not None else None
        members = list(group)
        if found is None:
            return f"entry {members[0].id} (event {members[0].event_id}): names link {link_id}, which does not exist"
        link = found
        hashes = []
        for entry in members:
            problem = _entry_problem(entry, f"entry {entry.id} (event {entry.event_id})", prev_hash=None)
            if problem:
                return problem
            hashes.append(bytes(entry.hash))
            count(entry)
        if len(members) != link.entry_count:
            return f"{link.name}: covers {link.entry_count} entries but {len(members)} name it (an entry was removed)"
        if link_hash(chain_key=link.chain_key, seq=link.seq, prev_link=link.prev_link, entry_hashes=hashes) != link.link:
            return f"{link.name}: does not carry the hash of its entries"
        seen.add(link.id)
        report.links_checked += 1
    for link in links.values():
        if link.id not in seen:
            return f"{link.name}: covers {link.entry_count} entries but none name it (its entries were removed)"
    return None


def _check_checkpoints(conn: Connection, report: VerifyReport) -> str | None:
    c, l = schema.chain_checkpoints, schema.chain_links
    rows = conn.execute(
        select(c.c.chain_key, c.c.seq, c.c.link, l.c.link)
        .outerjoin(l, (l.c.chain_key == c.c.chain_key) & (l.c.seq == c.c.seq))
        .order_by(c.c.chain_key, c.c.seq)
    ).all()
    for chain_key, seq, copied, link in rows:
        if link is None or bytes(link) != bytes(copied):
            return f"checkpoint of chain {chain_key} at seq {seq}: the chain no longer holds that link (rewritten)"
        report.checkpoints_checked += 1
    return None


def _balance_problem(report: VerifyReport, stored: dict[str, int], computed: dict[str, int]) -> str | None:
    for account in sorted(set(stored) | set(computed)):
        report.accounts_checked += 1
        if account not in stored:
            return f"account {account}: has postings but no balance row"
        if stored[account] != computed.get(account, 0):
            return f"account {account}: stored balance {stored[account]} but its postings sum to {computed.get(account, 0)}"
        kind, _ = split_account_key(account)
        if kind in NON_NEGATIVE_KINDS and computed.get(account, 0) < 0:
            return f"account {account}: negative balance {computed[account]}"
    return None


def _heads_problem(report: VerifyReport, expected: ExportedHeads, links: dict[tuple[str, int], bytes]) -> str | None:
    """Every exported head must still be in its chain, at its place; the chain may have grown since."""
    if expected.legacy != report.legacy:
        return (f"legacy chain: exported with {expected.legacy.entries} entries ending "
                f"{expected.legacy.head.hex()[:16]}, the ledger has {report.legacy.entries} ending "
                f"{report.legacy.head.hex()[:16]} (rewritten)")
    for chain_key, head in sorted(expected.chains.items()):
        current = report.heads.get(chain_key)
        if current is None or current.seq < head.seq:
            return (f"chain {chain_key}: exported at seq {head.seq}, but the ledger's chain ends at seq "
                    f"{current.seq if current else 0} (its tail was removed)")
        if links.get((chain_key, head.seq)) != head.link:
            return f"chain {chain_key}: the link at seq {head.seq} is not the one exported (the chain was rewritten)"
    return None


@dataclass(frozen=True, slots=True)
class _StoredEntry:
    id: int
    event_id: object
    kind: str
    occurred_at: object
    recorded_at: object
    volunteer_id: str | None
    org_id: str | None
    opportunity_id: str | None
    related_event_id: object
    prev_hash: bytes | None
    hash: bytes
    link_id: int | None
    postings: tuple[Posting, ...]


def _entries(conn: Connection, *, linked: bool) -> Iterator[_StoredEntry]:
    e, p = schema.entries, schema.postings
    related = schema.entries.alias("related")
    query = (
        select(
            e.c.id, e.c.event_id, e.c.kind, e.c.occurred_at, e.c.recorded_at, e.c.volunteer_id, e.c.org_id,
            e.c.opportunity_id, related.c.event_id, e.c.prev_hash, e.c.hash, e.c.link_id, p.c.account_key, p.c.amount,
        )
        .outerjoin(related, related.c.id == e.c.related_entry_id)
        .outerjoin(p, p.c.entry_id == e.c.id)
    )
    if linked:
        query = query.where(e.c.link_id.is_not(None)).order_by(e.c.link_id, e.c.id)
    else:
        query = query.where(e.c.link_id.is_(None)).order_by(e.c.id)
    rows = conn.execution_options(stream_results=True, yield_per=5_000).execute(query)
    for _, group in groupby(rows, key=lambda row: row[0]):
        members = list(group)
        first = members[0]
        postings = tuple(Posting(row[12], row[13]) for row in members if row[12] is not None)
        yield _StoredEntry(first[0], first[1], first[2], first[3], first[4], first[5], first[6], first[7], first[8],
                           first[9], first[10], first[11], postings)


def _entry_problem(entry: _StoredEntry, name: str, *, prev_hash: bytes | None) -> str | None:
    if len(entry.postings) < 2 or sum(p.amount for p in entry.postings) != 0:
        return f"{name}: {len(entry.postings)} postings summing to {sum(p.amount for p in entry.postings)}"
    digest = entry_hash(
        prev_hash=prev_hash,
        event_id=entry.event_id,
        kind=entry.kind,
        occurred_at=entry.occurred_at,
        recorded_at=entry.recorded_at,
        volunteer_id=entry.volunteer_id,
        org_id=entry.org_id,
        opportunity_id=entry.opportunity_id,
        related_event_id=entry.related_event_id,
        postings=entry.postings,
    )
    if digest != bytes(entry.hash):
        return f"{name}: stored hash does not match its contents (tampered or corrupted)"
    return None


def heads_of(report: VerifyReport) -> ExportedHeads:
    """What `--export-heads` writes: the legacy head and every chain's head, as verified."""
    return ExportedHeads(report.legacy, dict(report.heads))
