"""Each ledger invariant of docs/design.md §3, attacked directly against real PostgreSQL.

Legitimate writes go through the worker's own pipeline (`LedgerDriver` sends each command as the event that asks
for it); attacks are raw SQL that bypasses it, as a buggy client or an intruder with the table's privileges would.
"""
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
from ledger.hashing import GENESIS_HASH, entry_hash
from ledger.pg.processing import EventOutcome
from tests.ledger_helpers import (
    NOW,
    LedgerDriver,
    available_and_held,
    balance,
    chain_head,
    insert_raw_entry,
    insert_raw_link,
    new_id,
    scalar,
)


def _applied(outcomes: list[EventOutcome]) -> bool:
    return all(o.applied for o in outcomes)


@pytest.mark.parametrize("occurred_at", [  # the ends of the calendar events may name (docs/design.md §4.2)
    datetime(1900, 1, 1, tzinfo=UTC),
    datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),  # 05:00 UTC, microseconds kept
    datetime(2100, 12, 31, 18, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5))),  # the last moment, in UTC
])
def test_python_and_sql_agree_on_timestamps_at_the_ends_of_the_calendar(engine: Engine, occurred_at: datetime) -> None:
    outcomes = LedgerDriver(engine).apply([EarnCredits(new_id(), occurred_at, "v1", "org1", 150)])
    assert _applied(outcomes), outcomes
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries") == 1
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
            conn.execute(text(
                "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, hash, link_id) VALUES "
                "(nextval('entries_id_seq'), gen_random_uuid(), 'hours_approved', now(), now(), :hash, "
                "nextval('chain_links_id_seq'))"
            ), {"hash": b"\x05" * 32})
    assert _sqlstate(caught.value) == "23514"
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries") == 0


def test_zero_amount_posting_is_refused(engine: Engine) -> None:
    with pytest.raises(DBAPIError) as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", 0), Posting("volunteer:v1", 0)])
    assert _sqlstate(caught.value) == "23514"


def test_postings_added_to_a_sealed_entry_are_refused(engine: Engine) -> None:
    [applied] = LedgerDriver(engine).apply([_earn()])
    assert applied.applied
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
    assert available_and_held(engine, "v1") == (500, 0)


def test_a_posting_must_name_an_entry_and_an_account_that_exist(engine: Engine) -> None:
    """Once a statement rather than a foreign key a row: the same refusal, SQLSTATE 23503."""
    [applied] = LedgerDriver(engine).apply([_earn()])
    for sql, code in (
        ("INSERT INTO postings (entry_id, account_key, amount) VALUES (999999, 'volunteer:v1', 5), "
         "(999999, 'issuer:org1', -5)", "missing_entry"),
        ("INSERT INTO postings (entry_id, account_key, amount) VALUES (:e, 'volunteer:nobody', 5), "
         "(:e, 'issuer:nobody', -5)", "missing_account"),
    ):
        with pytest.raises(DBAPIError, match=code) as caught:
            with engine.begin() as conn:
                conn.execute(text(sql), {"e": applied.entry_id})
        assert _sqlstate(caught.value) == "23503"
    assert available_and_held(engine, "v1") == (500, 0)


def test_an_hours_decision_must_name_hours_logged_and_an_entry_that_exist(engine: Engine) -> None:
    [applied] = LedgerDriver(engine).apply([_earn()])
    with engine.connect() as conn:
        log = scalar(conn, "SELECT log_event_id FROM hours_decisions")
    for params, code in (({"log": new_id(), "entry": None, "decision": "rejected"}, "missing_log"),
                         ({"log": log, "entry": 999999, "decision": "approved"}, "missing_entry")):
        with pytest.raises(DBAPIError, match=code) as caught:
            with engine.begin() as conn:
                if params["log"] == log:
                    conn.execute(text("SET LOCAL session_replication_role = replica"))  # past the append-only rule
                    conn.execute(text("DELETE FROM hours_decisions"))
                    conn.execute(text("SET LOCAL session_replication_role = origin"))
                conn.execute(text(
                    "INSERT INTO hours_decisions (log_event_id, decision_event_id, decision, reason, entry_id, decided_at, "
                    "decided_by) VALUES (:log, gen_random_uuid(), :decision, '', :entry, now(), 'admin:test')"), params)
        assert _sqlstate(caught.value) == "23503"
    assert applied.applied


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
    LedgerDriver(engine).apply([_earn(), RedeemCredits(new_id(), NOW, "v1", "p1", 10_000)])
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
    driver = LedgerDriver(engine)
    earn = _earn(amount=250)
    first = driver.apply([earn, earn])
    again = driver.apply([earn])
    assert first[0].applied and not first[0].duplicate and first[0].entry_id is not None
    assert first[1] == first[0].as_duplicate()
    assert [(o.status, o.entry_id, o.duplicate) for o in again] == [("applied", first[0].entry_id, True)]
    assert available_and_held(engine, "v1") == (250, 0)
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries") == 1


def test_a_rejected_event_stays_rejected_when_replayed(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    spend = RedeemCredits(new_id(), NOW, "v1", "p1", 100)
    [refused] = driver.apply([spend])
    driver.apply([_earn()])
    [replayed] = driver.apply([spend])
    assert not refused.applied and refused.reason == "insufficient_credits"
    assert replayed == refused.as_duplicate()
    assert available_and_held(engine, "v1")[0] == 500


def test_database_refuses_a_second_entry_with_the_same_event_id(engine: Engine) -> None:
    event_id = new_id()
    with engine.begin() as conn:
        insert_raw_entry(conn, [Posting("issuer:org1", -100), Posting("volunteer:v1", 100)], event_id=event_id)
    with pytest.raises(DBAPIError) as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", -100), Posting("volunteer:v1", 100)], event_id=event_id)
    assert _sqlstate(caught.value) == "23505"
    assert available_and_held(engine, "v1")[0] == 100


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
    driver = LedgerDriver(engine)
    outcomes = driver.apply([_earn(amount=500), spend(), RedeemCredits(new_id(), NOW, "v1", "p1", 500)])
    assert outcomes[0].applied
    assert not outcomes[1].applied and outcomes[1].reason == "insufficient_credits"
    assert outcomes[2].applied, "the events around a refused one are applied"
    assert available_and_held(engine, "v1")[0] == 0
    assert available_and_held(engine, "v2")[0] == 0


def test_database_refuses_an_overdraft_the_python_rules_did_not_see(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_raw_entry(conn, [Posting("issuer:org1", -100), Posting("volunteer:v1", 100)])
    with pytest.raises(DBAPIError, match="balance_not_negative") as caught:
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("volunteer:v1", -101), Posting("partner:p1", 101)], kind="credits_redeemed")
    assert _sqlstate(caught.value) == "23514"
    assert available_and_held(engine, "v1")[0] == 100


def test_a_balance_may_not_dip_below_zero_inside_one_statement_either(engine: Engine) -> None:
    """A spend before the earning that covers it, both in one statement, ends positive but went negative."""
    with engine.begin() as conn:
        spend, earn = (conn.execute(text("SELECT nextval('entries_id_seq')")).scalar_one() for _ in range(2))
        conn.execute(text(
            "INSERT INTO accounts (key, kind, owner_id) VALUES ('volunteer:v1', 'volunteer', 'v1'), "
            "('partner:p1', 'partner', 'p1'), ('issuer:org1', 'issuer', 'org1') ON CONFLICT DO NOTHING"))
        conn.execute(text(
            "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, hash, link_id) VALUES "
            "(:spend, gen_random_uuid(), 'credits_redeemed', now(), now(), :a, nextval('chain_links_id_seq')), "
            "(:earn, gen_random_uuid(), 'hours_approved', now(), now(), :b, currval('chain_links_id_seq'))"
        ), {"spend": spend, "earn": earn, "a": b"\x01" * 32, "b": b"\x02" * 32})
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
    driver = LedgerDriver(engine)
    earn = _earn(amount=300)
    first, second = ReverseEntry(new_id(), NOW, earn.event_id), ReverseEntry(new_id(), NOW, earn.event_id)
    outcomes = driver.apply([earn, first])
    [again] = driver.apply([second])
    assert all(o.applied for o in outcomes)
    assert not again.applied and again.reason == "already_reversed"
    assert available_and_held(engine, "v1")[0] == 0
    assert balance(engine, "issuer:org1") == 0


def test_database_refuses_a_second_reversal(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    earn = _earn(amount=300)
    driver.apply([earn, ReverseEntry(new_id(), NOW, earn.event_id), _earn(amount=300)])
    with engine.connect() as conn:
        target = scalar(conn, "SELECT id FROM entries WHERE event_id = :e", e=earn.event_id)
    with pytest.raises(DBAPIError, match="entries_related_once") as caught:
        with engine.begin() as conn:
            insert_raw_entry(
                conn, [Posting("issuer:org1", 300), Posting("volunteer:v1", -300)], kind="entry_reversed",
                related_entry_id=target,
            )
    assert _sqlstate(caught.value) == "23505"
    assert available_and_held(engine, "v1")[0] == 300


def test_database_refuses_a_reversal_that_is_not_a_mirror(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    earn = _earn(amount=300)
    [applied] = driver.apply([earn])
    with pytest.raises(DBAPIError, match="bad_reversal"):
        with engine.begin() as conn:
            insert_raw_entry(
                conn, [Posting("issuer:org1", 200), Posting("volunteer:v1", -200)], kind="entry_reversed",
                related_entry_id=applied.entry_id,
            )


def test_reversing_a_gift_whose_credits_are_gone_is_refused(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    gift = GiftCredits(new_id(), NOW, "v1", "v2", 400)
    outcomes = driver.apply(
        [_earn(amount=400), gift, RedeemCredits(new_id(), NOW, "v2", "p1", 300), ReverseEntry(new_id(), NOW, gift.event_id)]
    )
    assert [o.status for o in outcomes] == ["applied", "applied", "applied", "rejected"]
    assert outcomes[3].reason == "insufficient_credits"  # type: ignore[union-attr]
    assert available_and_held(engine, "v2")[0] == 100


def test_reversing_an_attended_booking_is_refused_and_settlements_are_final(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    booking = BookOpportunity(new_id(), NOW, "v1", "p1", 200, "swim")
    attend = AttendBooking(new_id(), NOW, booking.event_id)
    outcomes = driver.apply(
        [
            _earn(amount=500),
            booking,
            attend,
            ReverseEntry(new_id(), NOW, booking.event_id),
            ReverseEntry(new_id(), NOW, attend.event_id),
            CancelBooking(new_id(), NOW, booking.event_id),
        ]
    )
    assert [o.reason or "applied" for o in outcomes] == [
        "applied", "applied", "applied", "booking_closed", "not_reversible", "booking_closed",
    ]
    assert available_and_held(engine, "v1") == (300, 0)
    assert balance(engine, "partner:p1") == 200


def test_booking_holds_then_cancel_releases(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    booking = BookOpportunity(new_id(), NOW, "v1", "p1", 200)
    driver.apply([_earn(amount=500), booking])
    assert available_and_held(engine, "v1") == (300, 200)
    driver.apply([CancelBooking(new_id(), NOW, booking.event_id)])
    assert available_and_held(engine, "v1") == (500, 0)


def test_database_refuses_settling_something_that_is_not_a_booking(engine: Engine) -> None:
    driver = LedgerDriver(engine)
    [applied] = driver.apply([_earn(amount=500)])
    with pytest.raises(DBAPIError, match="not_a_booking"):
        with engine.begin() as conn:
            insert_raw_entry(
                conn, [Posting("volunteer:v1", -100), Posting("partner:p1", 100)], kind="booking_attended",
                related_entry_id=applied.entry_id,
            )


# --- 5. tamper evidence: entry hashes and a chain of batch links per partition ------------------------------


def _linked_entry(conn, chain_key: str = "raw") -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    """An honest entry with its postings but not yet its link: (link id, entry hash)."""
    event_id, recorded_at = new_id(), datetime.now(UTC)
    postings = [Posting("issuer:org1", -1), Posting("volunteer:v1", 1)]
    digest = entry_hash(prev_hash=None, event_id=event_id, kind="hours_approved", occurred_at=NOW,
                        recorded_at=recorded_at, volunteer_id=None, org_id=None, opportunity_id=None,
                        related_event_id=None, postings=postings)
    link_id = scalar(conn, "SELECT nextval('chain_links_id_seq')")
    conn.execute(text("INSERT INTO accounts (key, kind, owner_id) VALUES ('issuer:org1', 'issuer', 'org1'), "
                      "('volunteer:v1', 'volunteer', 'v1') ON CONFLICT DO NOTHING"))
    entry_id = scalar(conn, "SELECT nextval('entries_id_seq')")
    conn.execute(text("INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, hash, link_id) "
                      "VALUES (:id, :e, 'hours_approved', :o, :r, :h, :l)"),
                 {"id": entry_id, "e": event_id, "o": NOW, "r": recorded_at, "h": digest, "l": link_id})
    conn.execute(text("INSERT INTO postings (entry_id, account_key, amount) VALUES "
                      "(:id, 'issuer:org1', -1), (:id, 'volunteer:v1', 1)"), {"id": entry_id})
    return link_id, digest


def test_batches_of_the_pipeline_extend_their_own_chains(engine: Engine) -> None:
    LedgerDriver(engine, chain="tc.activity/0").apply([_earn(), _earn(volunteer="v2")])
    LedgerDriver(engine, chain="tc.activity/1").apply([_earn(volunteer="v3")])
    LedgerDriver(engine, chain="tc.activity/0").apply([_earn(volunteer="v4")])
    with engine.connect() as conn:
        links = conn.execute(text("SELECT chain_key, seq, entry_count FROM chain_links ORDER BY id")).all()
        assert [tuple(row) for row in links] == [("tc.activity/0", 1, 2), ("tc.activity/1", 1, 1), ("tc.activity/0", 2, 1)]
        assert scalar(conn, "SELECT count(*) FROM entries WHERE link_id IS NULL OR prev_hash IS NOT NULL") == 0


def test_database_refuses_a_link_that_does_not_follow_its_chains_head(engine: Engine) -> None:
    LedgerDriver(engine, chain="raw").apply([_earn()])
    with pytest.raises(DBAPIError, match="broken_chain: link .* does not follow") as caught:
        with engine.begin() as conn:
            link_id, digest = _linked_entry(conn)
            insert_raw_link(conn, link_id, "raw", [digest], prev_link=b"\x07" * 32)
    assert _sqlstate(caught.value) == "23000"


def test_the_first_link_of_a_chain_follows_the_genesis_hash(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="broken_chain"):
        with engine.begin() as conn:
            link_id, digest = _linked_entry(conn, "new")
            insert_raw_link(conn, link_id, "new", [digest], seq=1, prev_link=b"\x07" * 32)


def test_database_refuses_a_fork_of_a_chain(engine: Engine) -> None:
    """A second link after the same head, as a worker that lost its partition and still writes would make."""
    LedgerDriver(engine, chain="raw").apply([_earn()])
    with engine.connect() as conn:
        seq, head = chain_head(conn, "raw")
    with engine.begin() as conn:
        link_id, digest = _linked_entry(conn)
        insert_raw_link(conn, link_id, "raw", [digest])  # the new owner extends the chain
    with pytest.raises(DBAPIError, match="chain_links_no_fork|chain_links_seq_key") as caught:
        with engine.begin() as conn:
            link_id, digest = _linked_entry(conn)
            insert_raw_link(conn, link_id, "raw", [digest], seq=seq + 1, prev_link=head)  # the old owner, stale
    assert _sqlstate(caught.value) == "23505"
    with engine.connect() as conn:
        assert chain_head(conn, "raw")[0] == seq + 1


def test_a_sealed_link_takes_no_more_entries(engine: Engine) -> None:
    LedgerDriver(engine, chain="raw").apply([_earn()])
    with pytest.raises(DBAPIError, match="broken_chain: entries added to link .* which is sealed"):
        with engine.begin() as conn:
            link_id = scalar(conn, "SELECT max(id) FROM chain_links")
            conn.execute(text(
                "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, hash, link_id) VALUES "
                "(nextval('entries_id_seq'), gen_random_uuid(), 'hours_approved', now(), now(), :h, :l)"
            ), {"h": b"\x05" * 32, "l": link_id})


def test_an_entry_whose_link_is_never_written_is_refused_at_commit(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="broken_chain: entry .* names link .* which was never written"):
        with engine.begin() as conn:
            _linked_entry(conn)
    with engine.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM entries") == 0


@pytest.mark.parametrize("tamper", ["count", "hash", "missing-entry"])
def test_a_link_must_cover_exactly_its_entries(engine: Engine, tamper: str) -> None:
    with pytest.raises(DBAPIError, match="broken_chain|bad_hash"):
        with engine.begin() as conn:
            link_id, digest = _linked_entry(conn)
            if tamper == "count":
                insert_raw_link(conn, link_id, "raw", [digest, digest])
            elif tamper == "hash":
                insert_raw_link(conn, link_id, "raw", [digest], forged=True)
            else:
                insert_raw_link(conn, link_id, "raw", [digest, GENESIS_HASH])


def test_entries_of_the_single_chain_of_old_cannot_be_added_any_more(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="entries_linked"):
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO entries (id, event_id, kind, occurred_at, recorded_at, prev_hash, hash) VALUES "
                "(nextval('entries_id_seq'), gen_random_uuid(), 'hours_approved', now(), now(), :p, :h)"
            ), {"p": bytes(32), "h": b"\x05" * 32})


def test_links_and_checkpoints_cannot_be_changed_or_removed(engine: Engine) -> None:
    LedgerDriver(engine, chain="raw").apply([_earn()])
    with engine.begin() as conn:
        seq, link = chain_head(conn, "raw")
        conn.execute(text("INSERT INTO chain_checkpoints (chain_key, seq, link) VALUES ('raw', :s, :l)"),
                     {"s": seq, "l": link})
    for statement in ("UPDATE chain_links SET link = sha256('x')", "DELETE FROM chain_links",
                      "TRUNCATE chain_links CASCADE", "UPDATE chain_checkpoints SET seq = 2",
                      "DELETE FROM chain_checkpoints", "TRUNCATE chain_checkpoints"):
        with pytest.raises(DBAPIError, match="append_only"):
            with engine.begin() as conn:
                conn.execute(text(statement))


def test_a_checkpoint_must_copy_its_link(engine: Engine) -> None:
    LedgerDriver(engine, chain="raw").apply([_earn()])
    with pytest.raises(DBAPIError, match="checkpoint of chain raw"):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO chain_checkpoints (chain_key, seq, link) VALUES ('raw', 1, :l)"),
                         {"l": b"\x03" * 32})


def test_database_refuses_an_entry_with_a_forged_hash(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="bad_hash"):
        with engine.begin() as conn:
            insert_raw_entry(conn, [Posting("issuer:org1", -1), Posting("volunteer:v1", 1)], correct_hash=False)


def test_python_and_sql_compute_the_same_canonical_hash(engine: Engine) -> None:
    """Entries of every kind, with ids full of separators, hash identically in both places."""
    booking, gift = BookOpportunity(new_id(), NOW, "v.1-x_2", "p1", 100), GiftCredits(new_id(), NOW, "v.1-x_2", "v2", 50)
    outcomes = LedgerDriver(engine).apply([
        EarnCredits(new_id(), NOW, "v.1-x_2", "org-1.a", 1500), _earn(), booking, AttendBooking(new_id(), NOW, booking.event_id),
        gift, ReverseEntry(new_id(), NOW, gift.event_id), RedeemCredits(new_id(), NOW, "v1", "p1", 100),
    ])
    assert all(o.applied for o in outcomes)
    with engine.connect() as conn:
        mismatches = scalar(conn, "SELECT count(*) FROM entries e WHERE e.hash <> sha256(tc_entry_canonical(e))")
    assert mismatches == 0
