"""Random sequences of ledger commands, sent as events through the worker's pipeline in random batches, never
break an invariant.

After every batch: each entry sums to zero over two or more postings, every stored balance equals the sum
of its postings, no volunteer (or holds, or partner) balance is negative, and the outcomes equal those of
the pure domain rules run in memory. Replaying the whole sequence afterwards changes nothing.
"""
from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from ledger.batch import BatchView
from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    GiftCredits,
    LedgerCommand,
    RedeemCredits,
    Rejection,
    ReverseEntry,
    draft_entry,
)
from ledger.amounts import minutes_to_hundredths
from tests.ledger_helpers import NOW, LedgerDriver

VOLUNTEERS, PARTNERS, ORGS = 4, 2, 2

amounts = st.integers(min_value=1, max_value=600)
volunteer = st.integers(0, VOLUNTEERS - 1)
earlier = st.integers(min_value=0, max_value=10_000)  # index of an earlier command, taken modulo
minutes = st.integers(min_value=1, max_value=600)
op = st.one_of(
    st.tuples(st.just("earn"), volunteer, st.integers(0, ORGS - 1), minutes),
    st.tuples(st.just("book"), volunteer, st.integers(0, PARTNERS - 1), amounts),
    st.tuples(st.just("cancel"), earlier),
    st.tuples(st.just("attend"), earlier),
    st.tuples(st.just("spend"), volunteer, st.integers(0, PARTNERS - 1), amounts),
    st.tuples(st.just("gift"), volunteer, volunteer, amounts),
    st.tuples(st.just("reverse"), earlier),
    st.tuples(st.just("replay"), earlier),
)


def _commands(ops: list[tuple[Any, ...]]) -> list[LedgerCommand]:
    """Concrete commands in a namespace of their own, so examples sharing a database never meet."""
    ns = uuid.uuid4().hex[:8]
    v = lambda i: f"{ns}-v{i}"  # noqa: E731
    commands: list[LedgerCommand] = []
    for item in ops:
        kind, *args = item
        event_id = uuid.uuid4()
        pick = (lambda i: commands[i % len(commands)]) if commands else None
        match kind:
            case "earn":
                commands.append(EarnCredits(event_id, NOW, v(args[0]), f"{ns}-o{args[1]}", minutes_to_hundredths(args[2])))
            case "book":
                commands.append(BookOpportunity(event_id, NOW, v(args[0]), f"{ns}-p{args[1]}", args[2]))
            case "spend":
                commands.append(RedeemCredits(event_id, NOW, v(args[0]), f"{ns}-p{args[1]}", args[2]))
            case "gift":
                # A gift to oneself is not an event at all (it cannot be encoded): the next volunteer instead.
                to = args[1] if args[1] != args[0] else (args[0] + 1) % VOLUNTEERS
                commands.append(GiftCredits(event_id, NOW, v(args[0]), v(to), args[2]))
            case "cancel" | "attend" if pick:
                cls = CancelBooking if kind == "cancel" else AttendBooking
                commands.append(cls(event_id, NOW, pick(args[0]).event_id))
            case "reverse" if pick:
                commands.append(ReverseEntry(event_id, NOW, pick(args[0]).event_id))
            case "replay" if pick:
                commands.append(pick(args[0]))  # the same event delivered again
    return commands


def _batches(commands: list[LedgerCommand], cuts: list[int]) -> list[list[LedgerCommand]]:
    points = sorted({c % (len(commands) + 1) for c in cuts} | {0, len(commands)})
    return [commands[a:b] for a, b in zip(points, points[1:]) if b > a]


def _model_outcomes(commands: list[LedgerCommand]) -> list[str]:
    """The pure rules, in memory: what each command should come to."""
    view = BatchView({}, {})
    decided: dict[uuid.UUID, str] = {}
    result = []
    for command in commands:
        if command.event_id not in decided:
            try:
                draft = draft_entry(command, view)
                view.accept(draft)
                decided[command.event_id] = "applied"
            except Rejection as refused:
                decided[command.event_id] = refused.reason.value
        result.append(decided[command.event_id])
    return result


def _assert_invariants(engine: Engine) -> None:
    with engine.connect() as conn:
        unbalanced = conn.execute(
            text(
                "SELECT count(*) FROM entries e WHERE (SELECT count(*) FROM postings p WHERE p.entry_id = e.id) < 2 "
                "OR (SELECT sum(amount) FROM postings p WHERE p.entry_id = e.id) <> 0"
            )
        ).scalar()
        drifted = conn.execute(
            text(
                "SELECT count(*) FROM balances b LEFT JOIN "
                "(SELECT account_key, sum(amount) AS total FROM postings GROUP BY account_key) p USING (account_key) "
                "WHERE b.balance <> coalesce(p.total, 0)"
            )
        ).scalar()
        negative = conn.execute(text("SELECT count(*) FROM balances WHERE kind <> 'issuer' AND balance < 0")).scalar()
    assert (unbalanced, drifted, negative) == (0, 0, 0)


def _snapshot(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*), max(id) FROM entries")).one(),
            conn.execute(text("SELECT count(*) FROM rejections")).scalar(),
            conn.execute(text("SELECT account_key, balance FROM balances ORDER BY account_key")).all(),
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_random_batches_keep_every_invariant_and_replay_changes_nothing(
    engine: Engine, ops: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    commands = _commands(ops)
    if not commands:
        return
    driver = LedgerDriver(engine)
    outcomes = []
    for batch in _batches(commands, cuts):
        outcomes.extend(driver.apply(batch))
        _assert_invariants(engine)

    observed = ["applied" if o.applied else o.reason for o in outcomes]
    assert observed == _model_outcomes(commands)

    before = _snapshot(engine)
    replayed = [o for batch in _batches(commands, cuts[::-1]) for o in driver.apply(batch)]
    assert all(o.duplicate for o in replayed)
    assert [o.status for o in replayed] == [o.status for o in outcomes]
    assert _snapshot(engine) == before
    _assert_invariants(engine)
