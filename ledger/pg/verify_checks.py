"""What `timecredits verify` checks besides the hash chain and the balances (docs/design.md §3.3, "What verify
proves"): each a named check over the whole ledger, set-based in SQL so that its cost is a few scans whatever the
ledger's size, and each naming the first entry it finds wrong, in credits and plain words.

The hash chain proves that nothing was changed after it was written; these prove that what was written follows
the ledger's rules: an approval earns what its hours are worth, a reversal mirrors what it reverses, a booking is
settled once and with its own hold, and the statistics count every entry once as it is.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Connection, text

from ledger.amounts import format_credits, minutes_to_hundredths
from ledger.domain import REVERSIBLE_KINDS, EntryKind

#: Entries the statistics worker may not have counted yet although newer facts exist: tc.ledger's partitions are
#: read independently, so one may trail another by a batch or two (docs/design.md §5.2). Beyond this, a missing
#: fact is a fault.
FACTS_GRACE = timedelta(minutes=10)

#: Settlements and where each may send the held credits (docs/design.md §3, §5.11).
_SETTLEMENTS = (EntryKind.BOOKING_CANCELLED, EntryKind.BOOKING_ATTENDED, EntryKind.BOOKING_EXPIRED,
                EntryKind.BOOKING_NO_SHOW)
_BACK_TO_VOLUNTEER = (EntryKind.BOOKING_CANCELLED, EntryKind.BOOKING_EXPIRED, EntryKind.BOOKING_NO_SHOW)
_ON_TO_PARTNER = (EntryKind.BOOKING_ATTENDED, EntryKind.BOOKING_NO_SHOW)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check: how many rows it looked at, the first problem it found, and a note that is not one."""

    name: str
    checked: int
    problem: str | None = None
    note: str | None = None
    #: How long the check took (set by `verify_ledger`).
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None


def _credits(hundredths: int | Decimal | None) -> str:
    return "no credits" if hundredths is None else f"{format_credits(int(hundredths))} credits"


def _kinds(kinds: tuple[EntryKind, ...] | frozenset[EntryKind]) -> list[str]:
    return sorted(kind.value for kind in kinds)


# --- 1. approved hours earn their minutes at the programme's rate ------------------------------------------

_APPROVALS = text("""
SELECT minutes, earned, matches, count(*) AS approvals
FROM (SELECT l.minutes, max(p.amount) AS earned,
             (e.kind = 'hours_approved' AND (e.volunteer_id, e.org_id) IS NOT DISTINCT FROM (l.volunteer_id, l.org_id))
                 AS matches
      FROM hours_decisions d
      JOIN hours_logs l ON l.event_id = d.log_event_id
      JOIN entries e ON e.id = d.entry_id
      JOIN postings p ON p.entry_id = e.id
      GROUP BY e.id, l.event_id) approvals
GROUP BY minutes, earned, matches
""")

_APPROVAL_NAMED = text("""
SELECT e.id, e.event_id, e.kind, e.volunteer_id, e.org_id, l.event_id AS log, l.volunteer_id AS log_volunteer,
       l.org_id AS log_org, l.minutes, max(p.amount) AS earned
FROM hours_decisions d
JOIN hours_logs l ON l.event_id = d.log_event_id
JOIN entries e ON e.id = d.entry_id
JOIN postings p ON p.entry_id = e.id
GROUP BY e.id, l.event_id
HAVING (l.minutes, max(p.amount)) IN (SELECT * FROM unnest(CAST(:minutes AS int[]), CAST(:earned AS bigint[])))
    OR NOT (e.kind = 'hours_approved'
            AND (e.volunteer_id, e.org_id) IS NOT DISTINCT FROM (l.volunteer_id, l.org_id))
ORDER BY e.id LIMIT 1
""")


def check_hours_rate(conn: Connection) -> CheckResult:
    """Every approval's entry gives the volunteer what the approved log's minutes earn (`minutes_to_hundredths`,
    the rule the worker applies), to that log's volunteer, from that log's organisation.

    SQL groups the approvals by (minutes, amount); the rule itself runs here on each distinct pair, so it has
    one copy. A day has at most 1,440 minutes, so there are few pairs however long the ledger."""
    pairs = conn.execute(_APPROVALS).all()
    checked = sum(row.approvals for row in pairs)
    wrong = [(row.minutes, row.earned) for row in pairs if minutes_to_hundredths(row.minutes) != row.earned]
    if not wrong and all(row.matches for row in pairs):
        return CheckResult("hours_rate", checked)
    row = conn.execute(_APPROVAL_NAMED, {"minutes": [m for m, _ in wrong] or [-1],
                                         "earned": [e for _, e in wrong] or [-1]}).one()
    name = f"entry {row.id} (event {row.event_id})"
    if row.kind != EntryKind.HOURS_APPROVED.value:
        problem = f"{name}: approves the hours logged as event {row.log} but is a {row.kind}"
    elif row.volunteer_id != row.log_volunteer or row.org_id != row.log_org:
        problem = (f"{name}: approves the hours logged as event {row.log} for volunteer {row.log_volunteer} with "
                   f"{row.log_org}, but credits volunteer {row.volunteer_id} from {row.org_id}")
    else:
        problem = (f"{name}: approves {row.minutes} minutes logged as event {row.log}, which earn "
                   f"{_credits(minutes_to_hundredths(row.minutes))}, but gives {_credits(row.earned)}")
    return CheckResult("hours_rate", checked, problem)


# --- 2. a reversal mirrors what it reverses, once ------------------------------------------------------

_REVERSALS_COUNT = text("SELECT count(*) FROM entries WHERE kind = 'entry_reversed'")

_REVERSAL_OF_WHAT = text("""
SELECT r.id, r.event_id, t.id AS target, t.event_id AS target_event, t.kind AS target_kind
FROM entries r LEFT JOIN entries t ON t.id = r.related_entry_id
WHERE r.kind = 'entry_reversed' AND (t.id IS NULL OR NOT t.kind = ANY (CAST(:reversible AS text[])))
ORDER BY r.id LIMIT 1
""")

# Each account of the reversal and of its target, summed over both: a mirror leaves every one at zero, and each
# account appears in both (docs/design.md §3: `entry_reversed` is "the mirror of the entry it reverses").
_NOT_A_MIRROR = text("""
WITH reversal AS (SELECT id, related_entry_id AS target FROM entries WHERE kind = 'entry_reversed'),
sides AS (
    SELECT r.id, p.account_key, p.amount, 1 AS side FROM reversal r JOIN postings p ON p.entry_id = r.id
    UNION ALL
    SELECT r.id, p.account_key, p.amount, 2 FROM reversal r JOIN postings p ON p.entry_id = r.target
)
SELECT s.id, e.event_id, t.id AS target, t.event_id AS target_event, s.account_key,
       coalesce(sum(s.amount) FILTER (WHERE side = 1), 0) AS reversed,
       coalesce(sum(s.amount) FILTER (WHERE side = 2), 0) AS original
FROM sides s JOIN entries e ON e.id = s.id JOIN entries t ON t.id = e.related_entry_id
GROUP BY s.id, e.event_id, t.id, t.event_id, s.account_key
HAVING sum(s.amount) <> 0 OR count(DISTINCT side) <> 2
ORDER BY s.id, s.account_key LIMIT 1
""")

_OTHER_IDS = text("""
SELECT r.id, r.event_id, t.id AS target, t.event_id AS target_event
FROM entries r JOIN entries t ON t.id = r.related_entry_id
WHERE r.kind = 'entry_reversed' AND (r.volunteer_id IS DISTINCT FROM t.volunteer_id
    OR r.org_id IS DISTINCT FROM t.org_id OR r.opportunity_id IS DISTINCT FROM t.opportunity_id)
ORDER BY r.id LIMIT 1
""")

# What may close an entry once: a reversal, or for a booking a settlement (the bookings check counts those).
_TWICE = text("""
SELECT t.id, t.event_id, t.kind, count(*) AS times, array_agg(c.id ORDER BY c.id) AS by_entries
FROM entries c JOIN entries t ON t.id = c.related_entry_id
WHERE t.kind = ANY (CAST(:kinds AS text[])) AND (:any_kind OR c.kind = 'entry_reversed')
GROUP BY t.id, t.event_id, t.kind
HAVING count(*) > 1
ORDER BY t.id LIMIT 1
""")


def check_reversals(conn: Connection) -> CheckResult:
    """Every reversal reverses a reversible entry, moves the same accounts by the opposite amounts, names the same
    volunteer, organisation and opportunity, and no entry is reversed twice."""
    checked = int(conn.execute(_REVERSALS_COUNT).scalar_one())
    if not checked:
        return CheckResult("reversals", 0)
    row = conn.execute(_REVERSAL_OF_WHAT, {"reversible": _kinds(REVERSIBLE_KINDS)}).first()
    if row is not None:
        what = "an entry that does not exist" if row.target is None else \
            f"entry {row.target} (event {row.target_event}), a {row.target_kind}, which cannot be reversed"
        return CheckResult("reversals", checked, f"reversal entry {row.id} (event {row.event_id}) reverses {what}")
    row = conn.execute(_NOT_A_MIRROR).first()
    if row is not None:
        return CheckResult("reversals", checked, (
            f"reversal entry {row.id} (event {row.event_id}) does not mirror entry {row.target} (event "
            f"{row.target_event}): account {row.account_key} moved {_credits(row.original)} and the reversal moves "
            f"it {_credits(row.reversed)}, not {_credits(-row.original)}"))
    row = conn.execute(_OTHER_IDS).first()
    if row is not None:
        return CheckResult("reversals", checked, (
            f"reversal entry {row.id} (event {row.event_id}) names another volunteer, organisation or opportunity "
            f"than entry {row.target} (event {row.target_event}), which it reverses"))
    row = conn.execute(_TWICE, {"kinds": _kinds(REVERSIBLE_KINDS - {EntryKind.OPPORTUNITY_BOOKED}),
                                "any_kind": False}).first()
    if row is not None:
        return CheckResult("reversals", checked, (
            f"entry {row.id} (event {row.event_id}), a {row.kind}, is reversed {row.times} times, by entries "
            f"{', '.join(map(str, row.by_entries))}"))
    return CheckResult("reversals", checked)


# --- 3. a booking is settled once, with its own hold ----------------------------------------------------

_SETTLEMENTS_COUNT = text("SELECT count(*) FROM entries WHERE kind = ANY (CAST(:kinds AS text[]))")

_BAD_SETTLEMENT = text("""
SELECT s.id, s.event_id, s.kind, b.id AS booking, b.event_id AS booking_event, b.kind AS booking_kind,
       h.amount AS held, count(p.*) AS postings,
       sum(p.amount) FILTER (WHERE p.account_key = 'holds:' || b.volunteer_id) AS released,
       sum(p.amount) FILTER (WHERE p.account_key = 'volunteer:' || b.volunteer_id) AS to_volunteer,
       sum(p.amount) FILTER (WHERE p.account_key = 'partner:' || b.org_id) AS to_partner,
       (s.volunteer_id, s.org_id, s.opportunity_id) IS NOT DISTINCT FROM (b.volunteer_id, b.org_id, b.opportunity_id)
           AS same_booking
FROM entries s
LEFT JOIN entries b ON b.id = s.related_entry_id
LEFT JOIN postings h ON h.entry_id = b.id AND h.account_key = 'holds:' || b.volunteer_id
JOIN postings p ON p.entry_id = s.id
WHERE s.kind = ANY (CAST(:kinds AS text[]))
GROUP BY s.id, b.id, h.amount
HAVING b.kind IS DISTINCT FROM 'opportunity_booked'
    OR NOT (s.volunteer_id, s.org_id, s.opportunity_id) IS NOT DISTINCT FROM (b.volunteer_id, b.org_id, b.opportunity_id)
    OR count(p.*) <> 2
    OR sum(p.amount) FILTER (WHERE p.account_key = 'holds:' || b.volunteer_id) IS DISTINCT FROM -h.amount
    OR NOT ((s.kind = ANY (CAST(:back AS text[]))
             AND coalesce(sum(p.amount) FILTER (WHERE p.account_key = 'volunteer:' || b.volunteer_id), 0) = h.amount)
         OR (s.kind = ANY (CAST(:on AS text[]))
             AND coalesce(sum(p.amount) FILTER (WHERE p.account_key = 'partner:' || b.org_id), 0) = h.amount))
ORDER BY s.id LIMIT 1
""")


def check_bookings(conn: Connection) -> CheckResult:
    """Every settlement (attended, cancelled, lapsed, no-show) settles a booking: it releases exactly the
    booking's hold, to the volunteer or the partner as its kind says, and no booking is closed twice (by two
    settlements, or a settlement and a reversal)."""
    kinds = _kinds(_SETTLEMENTS)
    checked = int(conn.execute(_SETTLEMENTS_COUNT, {"kinds": kinds}).scalar_one())
    row = conn.execute(_TWICE, {"kinds": [EntryKind.OPPORTUNITY_BOOKED.value], "any_kind": True}).first()
    if row is not None:
        return CheckResult("bookings", checked, (
            f"booking entry {row.id} (event {row.event_id}) is settled {row.times} times, by entries "
            f"{', '.join(map(str, row.by_entries))}"))
    if not checked:
        return CheckResult("bookings", 0)
    row = conn.execute(_BAD_SETTLEMENT, {"kinds": kinds, "back": _kinds(_BACK_TO_VOLUNTEER),
                                         "on": _kinds(_ON_TO_PARTNER)}).first()
    if row is None:
        return CheckResult("bookings", checked)
    name = f"settlement entry {row.id} (event {row.event_id}, {row.kind})"
    if row.booking is None:
        problem = f"{name}: settles no entry"
    elif row.booking_kind != EntryKind.OPPORTUNITY_BOOKED.value:
        problem = f"{name}: settles entry {row.booking} (event {row.booking_event}), a {row.booking_kind}, not a booking"
    elif not row.same_booking:
        problem = f"{name}: names another volunteer, partner or opportunity than booking entry {row.booking}"
    else:
        receiver = "the volunteer" if row.kind in _kinds(_BACK_TO_VOLUNTEER) else "the partner"
        if row.kind == EntryKind.BOOKING_NO_SHOW.value:
            receiver = "the volunteer or the partner"
        problem = (f"{name}: booking entry {row.booking} (event {row.booking_event}) holds {_credits(row.held)}, "
                   f"which should go back from the hold to {receiver}; the settlement releases "
                   f"{_credits(None if row.released is None else -row.released)} in {row.postings} postings "
                   f"({_credits(row.to_volunteer)} to the volunteer, {_credits(row.to_partner)} to the partner)")
    return CheckResult("bookings", checked, problem)


# --- 4. the statistics facts equal the ledger -------------------------------------------------------------

# The fact each entry should have (stats/facts.py): its kind, its largest posting, sign 1; a reversal counts as
# the kind and volunteer of what it reverses, sign -1, naming it.
_FACTS = text("""
WITH expected AS (
    SELECT e.id, e.event_id, e.recorded_at,
           CASE WHEN e.kind = 'entry_reversed' THEN t.kind ELSE e.kind END AS kind,
           CASE WHEN e.kind = 'entry_reversed' THEN t.volunteer_id ELSE e.volunteer_id END AS volunteer_id,
           CASE WHEN e.kind = 'entry_reversed' THEN -1 ELSE 1 END AS sign,
           CASE WHEN e.kind = 'entry_reversed' THEN t.id END AS original_entry_id,
           m.amount
    FROM entries e
    JOIN (SELECT entry_id, max(amount) AS amount FROM postings GROUP BY entry_id) m ON m.entry_id = e.id
    LEFT JOIN entries t ON t.id = e.related_entry_id AND e.kind = 'entry_reversed'
),
high AS (SELECT coalesce(max(entry_id), 0) AS entry_id FROM stats_facts),
compared AS (
    SELECT x.id, x.event_id, f.entry_id AS fact,
           x.kind, x.volunteer_id, x.sign, x.amount, x.original_entry_id,
           f.kind AS fact_kind, f.volunteer_id AS fact_volunteer, f.sign AS fact_sign, f.amount AS fact_amount,
           f.original_entry_id AS fact_original,
           x.id IS NOT NULL AND f.entry_id IS NULL
               AND (x.id > (SELECT entry_id FROM high) OR x.recorded_at > now() - CAST(:grace AS interval))
               AS not_yet
    FROM expected x FULL JOIN stats_facts f ON f.entry_id = x.id
)
SELECT count(*) FILTER (WHERE id IS NOT NULL) AS entries,
       count(*) FILTER (WHERE not_yet) AS not_yet,
       min(coalesce(id, fact)) FILTER (WHERE NOT not_yet AND (
           fact IS NULL OR id IS NULL
           OR (kind, volunteer_id, sign, amount, original_entry_id)
              IS DISTINCT FROM (fact_kind, fact_volunteer, fact_sign, fact_amount, fact_original))) AS first_wrong
FROM compared
""")

_FACT_OF = text("""
SELECT e.id, e.event_id, e.kind AS entry_kind, e.volunteer_id AS entry_volunteer, t.kind AS target_kind,
       t.volunteer_id AS target_volunteer, t.id AS target,
       (SELECT max(amount) FROM postings p WHERE p.entry_id = e.id) AS amount,
       f.entry_id AS fact, f.kind, f.volunteer_id, f.sign, f.amount AS fact_amount, f.original_entry_id
FROM (SELECT CAST(:id AS bigint) AS id) wanted
LEFT JOIN entries e ON e.id = wanted.id
LEFT JOIN entries t ON t.id = e.related_entry_id AND e.kind = 'entry_reversed'
LEFT JOIN stats_facts f ON f.entry_id = wanted.id
""")


def check_statistics(conn: Connection, grace: timedelta = FACTS_GRACE) -> CheckResult:
    """Every entry has exactly one statistics fact (its primary key is the entry id), with the kind, amount, sign
    and volunteer the entry gives it, and no fact names an entry that is not in the ledger; the rollups the
    figures read equal those the facts give.

    The statistics worker writes facts half a second after the ledger (docs/design.md §5.2): an entry with no
    fact yet, newer than the newest fact's entry or recorded within `FACTS_GRACE`, is not yet counted, reported
    without failing. An older one with none is a fact lost."""
    from stats.rollups import differences  # the figures' own rollups: the statistics package knows their rule

    row = conn.execute(_FACTS, {"grace": f"{int(grace.total_seconds())} seconds"}).one()
    note = (f"{row.not_yet} {'entry' if row.not_yet == 1 else 'entries'} not yet counted by the statistics worker"
            if row.not_yet else None)
    if row.first_wrong is None:
        if wrong := {table: rows for table, rows in differences(conn).items() if rows}:
            found = ", ".join(f"{rows} row(s) of {table}" for table, rows in wrong.items())
            return CheckResult("statistics", row.entries,
                               f"the statistics rollups differ from the facts: {found} (docs/design.md §5.2)", note)
        return CheckResult("statistics", row.entries, note=note)
    fact = conn.execute(_FACT_OF, {"id": row.first_wrong}).one()
    if fact.id is None:
        problem = (f"statistics fact of entry {fact.fact} ({fact.kind}, {_credits(fact.fact_amount)}, volunteer "
                   f"{fact.volunteer_id}): the ledger has no such entry")
    else:
        name = f"entry {fact.id} (event {fact.event_id}, {fact.entry_kind})"
        reversal = fact.entry_kind == EntryKind.ENTRY_REVERSED.value
        kind, volunteer = (fact.target_kind, fact.target_volunteer) if reversal else (fact.entry_kind,
                                                                                    fact.entry_volunteer)
        sign = -1 if reversal else 1
        if fact.fact is None:
            problem = f"{name}: has no statistics fact, though later entries are counted"
        else:
            wrong = _differences([
                ("kind", kind, fact.kind, str),
                ("amount", fact.amount, fact.fact_amount, _credits),
                ("sign", sign, fact.sign, str),
                ("volunteer", volunteer, fact.volunteer_id, str),
                ("entry it corrects", fact.target, fact.original_entry_id, str),
            ])
            problem = f"{name}: its statistics fact says {wrong}"
    return CheckResult("statistics", row.entries, problem, note)


def _differences(fields: list[tuple[str, object, object, Callable[..., str]]]) -> str:
    return "; ".join(f"{label} {show(found)} where the ledger says {show(expected)}"
                     for label, expected, found, show in fields if expected != found)


#: What each check counts, for the report.
UNITS = {"hours_rate": ("approval of hours", "approvals of hours"), "reversals": ("reversal", "reversals"),
         "bookings": ("settlement of a booking", "settlements of bookings"),
         "statistics": ("entry against its statistics fact", "entries against their statistics facts")}

#: The checks `verify` runs after the hash chain and the balances, in order.
CHECKS: tuple[Callable[[Connection], CheckResult], ...] = (
    check_hours_rate, check_reversals, check_bookings, check_statistics,
)
