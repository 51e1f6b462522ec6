"""Per-batch checks and lookups whose cost does not grow with the ledger.

Revision ID: 0006_scale_with_the_ledger
Revises: 0005_set_based_checks
Create Date: 2026-12-01

The entry check of 0005 could be planned to read every posting from the first (a merge join over the whole
primary key) and hash every entry (a sequential scan) to check the thousand a batch had written: a cost that
grows with the ledger without bound. The planner cannot know how few
rows a transition table holds, so here the rows a statement touched are gathered into arrays first and every
lookup is an index probe by `= ANY(array)`: the same rules, checked at a cost that depends on the batch alone.

The statistics consumer also looked up the hours behind each `hours_approved` entry by
`hours_decisions.entry_id`, which had no index: every batch scanned every decision ever made. Rejected logs
make no entry, hence the partial index.
"""
from __future__ import annotations

import importlib
import re

from alembic import op

revision = "0006_scale_with_the_ledger"
down_revision = "0005_set_based_checks"
branch_labels = None
depends_on = None

POSTINGS_INSERTED = r"""
CREATE OR REPLACE FUNCTION tc_postings_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    touched bigint[];
    moved_keys text[];
    moved_deltas bigint[];
    offender uuid;
BEGIN
    SELECT array_agg(DISTINCT entry_id) INTO touched FROM new_postings;
    SELECT array_agg(account_key), array_agg(delta) INTO moved_keys, moved_deltas
    FROM (SELECT account_key, sum(amount)::bigint AS delta FROM new_postings GROUP BY account_key) d;

    -- Invariant 4 at every entry, not only at the end: the balance before the statement plus the running sum.
    WITH moved AS (
        UPDATE balances b SET balance = b.balance + d.delta, updated_at = now()
        FROM unnest(moved_keys, moved_deltas) AS d(account_key, delta)
        WHERE b.account_key = d.account_key AND b.account_key = ANY (moved_keys)
        RETURNING b.account_key, b.kind, b.balance - d.delta AS opening
    )
    SELECT r.account_key, r.entry_id INTO bad
    FROM (SELECT p.account_key, p.entry_id,
                 sum(p.amount) OVER (PARTITION BY p.account_key ORDER BY p.entry_id) AS running
          FROM new_postings p) r
    JOIN moved m ON m.account_key = r.account_key
    WHERE m.kind <> 'issuer' AND m.opening + r.running < 0
    LIMIT 1;
    IF FOUND THEN
        SELECT event_id INTO offender FROM entries WHERE id = bad.entry_id;
        RAISE EXCEPTION 'balance_not_negative: entry % would take % below zero', offender, bad.account_key
            USING ERRCODE = 'check_violation', CONSTRAINT = 'balance_not_negative';
    END IF;

    -- Invariants 1 and 5 for every entry the statement touched, with all of its postings.
    FOR bad IN
        WITH sums AS (
            SELECT p.entry_id, count(*) AS n, sum(p.amount) AS total,
                   string_agg(p.account_key || '=' || p.amount, ';' ORDER BY p.account_key COLLATE "C", p.amount) AS body
            FROM postings p
            WHERE p.entry_id = ANY (touched)
            GROUP BY p.entry_id
        ),
        checked AS MATERIALIZED (  -- each hash computed once
            SELECT e.id, e.event_id, e.kind, s.n, s.total, r.event_id AS related_event_id, r.kind AS related_kind,
                   e.hash <> sha256(tc_canonical(e.prev_hash, e.event_id, e.kind, e.occurred_at, e.recorded_at,
                                                 e.volunteer_id, e.org_id, e.opportunity_id, r.event_id, s.body)) AS forged
            FROM sums s
            JOIN entries e ON e.id = s.entry_id AND e.id = ANY (touched)
            LEFT JOIN entries r ON r.id = e.related_entry_id
        )
        SELECT * FROM checked c
        WHERE c.n < 2 OR c.total <> 0 OR c.forged OR c.kind = 'entry_reversed'
           OR (c.kind IN ('booking_cancelled', 'booking_attended') AND c.related_kind <> 'opportunity_booked')
    LOOP
        IF bad.n < 2 OR bad.total <> 0 THEN
            RAISE EXCEPTION 'unbalanced_entry: entry % has % postings summing to %', bad.event_id, bad.n, bad.total
                USING ERRCODE = 'check_violation';
        END IF;
        IF bad.kind IN ('booking_cancelled', 'booking_attended') AND bad.related_kind <> 'opportunity_booked' THEN
            RAISE EXCEPTION 'not_a_booking: entry % settles % which is a %', bad.event_id, bad.related_event_id,
                bad.related_kind USING ERRCODE = 'check_violation';
        END IF;
        IF bad.kind = 'entry_reversed' THEN
            PERFORM tc_check_reversal(bad.id);
        END IF;
        IF bad.forged THEN
            RAISE EXCEPTION 'bad_hash: entry % does not carry the hash of its contents', bad.event_id
                USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
"""


def _previous_postings_inserted() -> str:
    """0005's version of the function, taken from that migration so that a downgrade restores it exactly."""
    previous = importlib.import_module("infra.migrations.versions.0005_set_based_checks").UPGRADE
    body = re.search(r"CREATE FUNCTION tc_postings_inserted\(\).*?END \$\$;", previous, re.DOTALL)
    assert body is not None
    return body.group(0).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    op.execute(POSTINGS_INSERTED)
    op.execute("CREATE INDEX hours_decisions_entry_idx ON hours_decisions (entry_id) WHERE entry_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX hours_decisions_entry_idx")
    op.execute(_previous_postings_inserted())
