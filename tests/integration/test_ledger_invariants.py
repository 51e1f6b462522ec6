"""Each ledger invariant of docs/design.md §3, attacked directly against real PostgreSQL."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    GiftCredits,
    Posting,
    RedeemCredits,
    ReverseEntry,
)
from ledger.repository import Applied, LedgerRepository, Rejected
from tests.ledger_helpers import NOW, insert_raw_entry, new_id, scalar


@pytest.mark.parametrize("occurred_at", [
    datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=UTC),  # a three-digit year: the database writes it as 0999
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5))),  # 9999-12-31 in UTC
])
def test_python_and_sql_agree_on_timestamps_at_the_ends_of_the_calendar(engine: Engine, occurred_at: datetime) -> None:
    outcomes = LedgerRepository(engine).apply_batch([EarnCredits(new_id(), occurred_at, "v1", "org1", 150)])
    assert all(isinstance(o, Applied) for o in outcomes), outcomes
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries e WHERE e.hash <> sha256(tc_entry_canonical(e))") == 0


def _sqlstate(error: DBAPIError) -> str:
    return error.orig.pgcode  # type: ignore[union-attr]


def _earn(volunteer: str = "v1", amount: int = 500, org: str = "org1") -> EarnCredits:
    return EarnCredits(new_id(), NOW, volunteer, org, amount)


# --- 1. postings of an entry sum to zero ------------------------------------------------------


def test_unbalanced_entry_is_refused_at_commit(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="unbalanced_entry") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", -100), Posting("volunteer:v1", 99)])
    assert _sqlstate(caught.value) == "23514"
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries") == 0
        assert scalar(conn, "SELECT count(*) FROM balances WHERE balance <> 0") == 0


def test_entry_with_a_single_posting_is_refused(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="unbalanced_entry"):
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("volunteer:v1", 100)])


def test_entry_without_any_postings_is_refused_at_commit(engine: Engine) -> None:
    """No postings statement ever runs for it, so only the deferred check at commit can see it."""
    with pytest.raises(DBAPIError, match="has no postings") as caught:
        with engine.begin() as conn:
            head = conn.execute(text("SELECT hash FROM entries ORDER BY id DESC LIMIT 1")).scalar()
            conn.execute(text(
                "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, prev_hash, hash) VALUES "
                "(nextval('entries_id_seq'), gen_random_uuid(), 'hours_approved', now(), now(), :head, :hash)"
            ), {"head": bytes(head) if head else bytes(32), "hash": b"\x05" * 32})
    assert _sqlstate(caught.value) == "23514"
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries") == 0


def test_zero_amount_posting_is_refused(engine: Engine) -> None:
    with pytest.raises(DBAPIError) as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", 0), Posting("volunteer:v1", 0)])
    assert _sqlstate(caught.value) == "23514"


def test_postings_added_to_a_sealed_entry_are_refused(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    [applied] = repository.apply_batch([_earn()])
    assert isinstance(applied, Applied)
    with pytest.raises(DBAPIError, match="unbalanced_entry"):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO accounts (key, kind, owner_id) VALUES ('volunteer:v8', 'volunteer', 'v8')"))
            conn.execute(
                text("INSERT INTO postings (entry_id, account_key, amount) VALUES (:e, 'volunteer:v8', 1000)"),
                {"e": applied.entry_id},
            )
    # A balanced pair slipped into an old entry still changes what was hashed.
    with pytest.raises(DBAPIError, match="bad_hash"):
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (key, kind, owner_id) "
                    "VALUES ('volunteer:v9', 'volunteer', 'v9'), ('issuer:org9', 'issuer', 'org9')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO postings (entry_id, account_key, amount) "
                    "VALUES (:e, 'volunteer:v9', 1000), (:e, 'issuer:org9', -1000)"
                ).bindparams(e=applied.entry_id)
            )
    assert repository.volunteer_balance("v1").available == 500


# --- 2. no UPDATE or DELETE on ledger rows ------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE postings SET amount = amount * 2",
        "UPDATE entries SET occurred_at = now()",
        "UPDATE accounts SET owner_id = owner_id",
        "UPDATE balances SET balance = balance + 100",
        "UPDATE rejections SET reason = 'ok'",
        "DELETE FROM postings",
        "DELETE FROM entries",
        "DELETE FROM accounts",
        "DELETE FROM balances",
        "DELETE FROM rejections",
        "TRUNCATE entries CASCADE",
        "TRUNCATE balances",
        "INSERT INTO balances (account_key, kind, balance) VALUES ('volunteer:v1', 'volunteer', 1)",
    ],
)
def test_ledger_rows_cannot_be_changed_or_removed(engine: Engine, statement: str) -> None:
    repository = LedgerRepository(engine)
    repository.apply_batch([_earn(), RedeemCredits(new_id(), NOW, "v1", "p1", 10_000)])
    with engine.connect() as conn:
        before = conn.execute(text("SELECT account_key, balance FROM balances ORDER BY 1")).all()
    with pytest.raises(DBAPIError) as caught:
        with engine.begin() as conn:
            conn.execute(text(statement))
    assert _sqlstate(caught.value) in {"23001", "23505"}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT account_key, balance FROM balances ORDER BY 1")).all() == before
        assert scalar(conn, "SELECT count(*) FROM entries") == 1
        assert scalar(conn, "SELECT count(*) FROM rejections") == 1


# --- 3. event_id is unique ----------------------------------------------------------------------


def test_same_event_twice_is_one_entry_and_one_balance_change(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    earn = _earn(amount=250)
    first = repository.apply_batch([earn, earn])
    again = repository.apply_batch([earn])
    assert isinstance(first[0], Applied) and not first[0].duplicate
    assert first[1] == Applied(earn.event_id, first[0].entry_id, duplicate=True)
    assert again == [Applied(earn.event_id, first[0].entry_id, duplicate=True)]
    assert repository.volunteer_balance("v1").available == 250
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries") == 1


def test_a_rejected_event_stays_rejected_when_replayed(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    spend = RedeemCredits(new_id(), NOW, "v1", "p1", 100)
    [refused] = repository.apply_batch([spend])
    repository.apply_batch([_earn()])
    [replayed] = repository.apply_batch([spend])
    assert isinstance(refused, Rejected) and refused.reason == "insufficient_credits"
    assert replayed == Rejected(spend.event_id, refused.reason, refused.message, duplicate=True)
    assert repository.volunteer_balance("v1").available == 500


def test_database_refuses_a_second_entry_with_the_same_event_id(engine: Engine) -> None:
    event_id = new_id()
    with engine.begin() as conn:
        insert_raw_entry(conn, [Posting("issuer:org1", -100), Posting("volunteer:v1", 100)], event_id=event_id)
    with pytest.raises(DBAPIError) as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", -100), Posting("volunteer:v1", 100)], event_id=event_id)
    assert _sqlstate(caught.value) == "23505"
    assert LedgerRepository(engine).volunteer_balance("v1").available == 100


# --- 4. no negative volunteer balance -----------------------------------------------------------


@pytest.mark.parametrize(
    "spend",
    [
        lambda: RedeemCredits(new_id(), NOW, "v1", "p1", 501),
        lambda: BookOpportunity(new_id(), NOW, "v1", "p1", 501),
        lambda: GiftCredits(new_id(), NOW, "v1", "v2", 501),
    ],
    ids=["redeem", "book", "gift"],
)
def test_overdraft_is_refused_with_insufficient_credits(engine: Engine, spend) -> None:  # type: ignore[no-untyped-def]
    repository = LedgerRepository(engine)
    outcomes = repository.apply_batch([_earn(amount=500), spend(), RedeemCredits(new_id(), NOW, "v1", "p1", 500)])
    assert isinstance(outcomes[0], Applied)
    assert isinstance(outcomes[1], Rejected) and outcomes[1].reason == "insufficient_credits"
    assert isinstance(outcomes[2], Applied), "the events around a refused one are applied"
    assert repository.volunteer_balance("v1").available == 0
    assert repository.volunteer_balance("v2").available == 0


def test_database_refuses_an_overdraft_the_python_rules_did_not_see(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_raw_entry(conn, [Posting("issuer:org1", -100), Posting("volunteer:v1", 100)])
    with pytest.raises(DBAPIError, match="balance_not_negative") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("volunteer:v1", -101), Posting("partner:p1", 101)], kind="credits_redeemed")
    assert _sqlstate(caught.value) == "23514"
    assert LedgerRepository(engine).volunteer_balance("v1").available == 100


def test_a_balance_may_not_dip_below_zero_inside_one_statement_either(engine: Engine) -> None:
    """A spend before the earning that covers it, both in one statement, ends positive but went negative."""
    with engine.begin() as conn:
        head = conn.execute(text("SELECT hash FROM entries ORDER BY id DESC LIMIT 1")).scalar()
        spend, earn = (conn.execute(text("SELECT nextval('entries_id_seq')")).scalar_one() for _ in range(2))
        conn.execute(text(
            "INSERT INTO accounts (key, kind, owner_id) VALUES ('volunteer:v1', 'volunteer', 'v1'), "
            "('partner:p1', 'partner', 'p1'), ('issuer:org1', 'issuer', 'org1') ON CONFLICT DO NOTHING"))
        conn.execute(text(
            "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, prev_hash, hash) VALUES "
            "(:spend, gen_random_uuid(), 'credits_redeemed', now(), now(), :head, :a), "
            "(:earn, gen_random_uuid(), 'hours_approved', now(), now(), :a, :b)"
        ), {"spend": spend, "earn": earn, "head": bytes(head) if head else bytes(32), "a": b"\x01" * 32,
            "b": b"\x02" * 32})
        with pytest.raises(DBAPIError, match="balance_not_negative") as caught:
            conn.execute(text(
                "INSERT INTO postings (entry_id, account_key, amount) VALUES (:spend, 'volunteer:v1', -5), "
                "(:spend, 'partner:p1', 5), (:earn, 'issuer:org1', -10), (:earn, 'volunteer:v1', 10)"
            ), {"spend": spend, "earn": earn})
        assert _sqlstate(caught.value) == "23514"
        assert caught.value.orig.diag.constraint_name == "balance_not_negative"  # type: ignore[union-attr]
        conn.rollback()


def test_holds_and_partner_accounts_cannot_go_negative_either(engine: Engine) -> None:
    for bad in ([Posting("holds:v1", -1), Posting("volunteer:v1", 1)], [Posting("partner:p1", -1), Posting("volunteer:v1", 1)]):
        with pytest.raises(DBAPIError, match="balance_not_negative"):
            with engine.begin() as conn:
                insert_raw_entry(conn, bad, kind="credits_gifted")


# --- reversals ------------------------------------------------------------------------------------


def test_an_entry_is_reversed_once_only(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    earn = _earn(amount=300)
    first, second = ReverseEntry(new_id(), NOW, earn.event_id), ReverseEntry(new_id(), NOW, earn.event_id)
    outcomes = repository.apply_batch([earn, first])
    [again] = repository.apply_batch([second])
    assert all(isinstance(o, Applied) for o in outcomes)
    assert isinstance(again, Rejected) and again.reason == "already_reversed"
    assert repository.volunteer_balance("v1").available == 0
    assert repository.balance("issuer:org1") == 0


def test_database_refuses_a_second_reversal(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    earn = _earn(amount=300)
    repository.apply_batch([earn, ReverseEntry(new_id(), NOW, earn.event_id), _earn(amount=300)])
    with engine.connect() as conn:
        target = scalar(conn, "SELECT id FROM entries WHERE event_id = :e", e=earn.event_id)
    with pytest.raises(DBAPIError, match="entries_related_once") as caught:
        with engine.begin() as conn:
            insert_raw_entry(
                conn, [Posting("issuer:org1", 300), Posting("volunteer:v1", -300)], kind="entry_reversed",
                related_entry_id=target,
            )
    assert _sqlstate(caught.value) == "23505"
    assert repository.volunteer_balance("v1").available == 300


def test_database_refuses_a_reversal_that_is_not_a_mirror(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    earn = _earn(amount=300)
    [applied] = repository.apply_batch([earn])
    with pytest.raises(DBAPIError, match="bad_reversal"):
        with engine.begin() as conn:
            insert_raw_entry(
                conn, [Posting("issuer:org1", 200), Posting("volunteer:v1", -200)], kind="entry_reversed",
                related_entry_id=applied.entry_id,
            )


def test_reversing_a_gift_whose_credits_are_gone_is_refused(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    gift = GiftCredits(new_id(), NOW, "v1", "v2", 400)
    outcomes = repository.apply_batch(
        [_earn(amount=400), gift, RedeemCredits(new_id(), NOW, "v2", "p1", 300), ReverseEntry(new_id(), NOW, gift.event_id)]
    )
    assert [type(o) for o in outcomes] == [Applied, Applied, Applied, Rejected]
    assert outcomes[3].reason == "insufficient_credits"  # type: ignore[union-attr]
    assert repository.volunteer_balance("v2").available == 100


def test_reversing_an_attended_booking_is_refused_and_settlements_are_final(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    booking = BookOpportunity(new_id(), NOW, "v1", "p1", 200, "swim")
    attend = AttendBooking(new_id(), NOW, booking.event_id)
    outcomes = repository.apply_batch(
        [
            _earn(amount=500),
            booking,
            attend,
            ReverseEntry(new_id(), NOW, booking.event_id),
            ReverseEntry(new_id(), NOW, attend.event_id),
            CancelBooking(new_id(), NOW, booking.event_id),
        ]
    )
    assert [getattr(o, "reason", "applied") for o in outcomes] == [
        "applied", "applied", "applied", "booking_closed", "not_reversible", "booking_closed",
    ]
    assert repository.volunteer_balance("v1") == repository.volunteer_balance("v1").__class__("v1", 300, 0)
    assert repository.balance("partner:p1") == 200


def test_booking_holds_then_cancel_releases(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    booking = BookOpportunity(new_id(), NOW, "v1", "p1", 200)
    repository.apply_batch([_earn(amount=500), booking])
    assert (repository.volunteer_balance("v1").available, repository.volunteer_balance("v1").held) == (300, 200)
    repository.apply_batch([CancelBooking(new_id(), NOW, booking.event_id)])
    assert (repository.volunteer_balance("v1").available, repository.volunteer_balance("v1").held) == (500, 0)


def test_database_refuses_settling_something_that_is_not_a_booking(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    [applied] = repository.apply_batch([_earn(amount=500)])
    with pytest.raises(DBAPIError, match="not_a_booking"):
        with engine.begin() as conn:
            insert_raw_entry(
                conn, [Posting("volunteer:v1", -100), Posting("partner:p1", 100)], kind="booking_attended",
                related_entry_id=applied.entry_id,
            )


# --- 5. hash chain --------------------------------------------------------------------------------


def test_database_refuses_an_entry_that_does_not_follow_the_chain_head(engine: Engine) -> None:
    LedgerRepository(engine).apply_batch([_earn()])
    with pytest.raises(DBAPIError, match="broken_chain"):
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", -1), Posting("volunteer:v1", 1)], prev_hash=b"\x07" * 32)


def test_database_refuses_a_fork_of_the_chain(engine: Engine) -> None:
    """A second entry naming the same predecessor (here the genesis) would fork the chain at any isolation level."""
    LedgerRepository(engine).apply_batch([_earn()])
    with pytest.raises(DBAPIError, match="entries_prev_hash_key"):
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", -1), Posting("volunteer:v1", 1)], prev_hash=bytes(32))


def test_new_entries_of_one_statement_must_chain_to_each_other(engine: Engine) -> None:
    repository = LedgerRepository(engine)
    repository.apply_batch([_earn()])
    with engine.connect() as conn:
        head = bytes(scalar(conn, "SELECT hash FROM entries ORDER BY id DESC LIMIT 1"))
    with pytest.raises(DBAPIError, match="broken_chain"):
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, prev_hash, hash) VALUES "
                "(nextval('entries_id_seq'), gen_random_uuid(), 'hours_approved', now(), now(), :head, :a), "
                "(nextval('entries_id_seq'), gen_random_uuid(), 'hours_approved', now(), now(), :other, :b)"
            ), {"head": head, "a": b"\x01" * 32, "other": b"\x02" * 32, "b": b"\x03" * 32})


def test_database_refuses_an_entry_with_a_forged_hash(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="bad_hash"):
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", -1), Posting("volunteer:v1", 1)], correct_hash=False)


def test_python_and_sql_compute_the_same_canonical_hash(engine: Engine) -> None:
    """Ids with non-ASCII text and separators hash identically in both places."""
    repository = LedgerRepository(engine)
    outcomes = repository.apply_batch(
        [EarnCredits(new_id(), NOW, "Zoë=1;|x", "café:org".replace(":", "-"), 150), _earn()]
    )
    assert all(isinstance(o, Applied) for o in outcomes)
    with engine.connect() as conn:
        mismatches = scalar(conn, "SELECT count(*) FROM entries e WHERE e.hash <> sha256(tc_entry_canonical(e))")
    assert mismatches == 0
