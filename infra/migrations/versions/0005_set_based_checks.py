"""The ledger's invariants checked once a statement instead of once a row: same rules, a fraction of the cost.

Revision ID: 0005_set_based_checks
Revises: 0004_statistics
Create Date: 2026-11-22

The per-row triggers of 0001 did their work once a row: one balance UPDATE a posting, one chain-link lookup an
entry, and at commit one plpgsql call an entry that re-read the entry, its postings and the entry it refers to,
and hashed it; for a worker writing a thousand entries a transaction, most of its time. Here each rule runs once
a statement over its transition table:

- postings (AFTER INSERT, per statement): balances move by one UPDATE per account, and a window over the new
  postings in entry order proves that no volunteer, holds or partner balance went below zero at any entry
  (not only at the end of the statement); then every entry the statement touched, old or new, is checked whole:
  two or more postings summing to zero, a settlement that refers to a booking, a reversal that mirrors what it
  reverses, and a hash that covers it all. An entry's postings must therefore arrive in one statement.
- entries (AFTER INSERT, per statement): under the chain lock, the new entries must follow the newest earlier
  entry and each other, in id order. A unique prev_hash makes a fork impossible at any isolation level.
- entries (deferred, per row, at commit): an entry must have postings. This is one index probe, the only
  per-row check left, and it is what refuses an entry written without any postings at all.
"""
from __future__ import annotations

from alembic import op

revision = "0005_set_based_checks"
down_revision = "0004_statistics"
branch_labels = None
depends_on = None

UPGRADE = r"""
DROP TRIGGER postings_move_balance ON postings;
DROP TRIGGER entries_link ON entries;
DROP TRIGGER entries_check ON entries;
DROP TRIGGER postings_check ON postings;

ALTER TABLE entries ADD CONSTRAINT entries_prev_hash_key UNIQUE (prev_hash);

-- The same bytes as ledger/hashing.py:canonical_entry, from columns rather than a row. Written out in full and
-- declared STABLE (to_char is) so that the planner inlines it rather than calling a function for every entry.
CREATE FUNCTION tc_canonical(prev_hash bytea, event_id uuid, kind text, occurred_at timestamptz,
                             recorded_at timestamptz, volunteer_id text, org_id text, opportunity_id text,
                             related_event_id uuid, postings text) RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT convert_to(
        '3:tc1'
        || '64:' || encode(prev_hash, 'hex')
        || '36:' || event_id::text
        || length(kind) || ':' || kind
        || length(to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) || ':'
        || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || length(to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) || ':'
        || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || length(coalesce(volunteer_id, '')) || ':' || coalesce(volunteer_id, '')
        || length(coalesce(org_id, '')) || ':' || coalesce(org_id, '')
        || length(coalesce(opportunity_id, '')) || ':' || coalesce(opportunity_id, '')
        || CASE WHEN related_event_id IS NULL THEN '0:' ELSE '36:' || related_event_id::text END
        || length(coalesce(postings, '')) || ':' || coalesce(postings, ''),
        'UTF8')
$$;

CREATE FUNCTION tc_postings_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- Invariant 4 at every entry, not only at the end: the balance before the statement plus the running sum.
    WITH moved AS (
        UPDATE balances b SET balance = b.balance + d.delta, updated_at = now()
        FROM (SELECT account_key, sum(amount) AS delta FROM new_postings GROUP BY account_key) d
        WHERE b.account_key = d.account_key
        RETURNING b.account_key, b.kind, b.balance - d.delta AS opening
    )
    SELECT m.account_key, e.event_id, r.running INTO bad
    FROM (SELECT p.account_key, p.entry_id,
                 sum(p.amount) OVER (PARTITION BY p.account_key ORDER BY p.entry_id) AS running
          FROM new_postings p) r
    JOIN moved m ON m.account_key = r.account_key
    JOIN entries e ON e.id = r.entry_id
    WHERE m.kind <> 'issuer' AND m.opening + r.running < 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'balance_not_negative: entry % would take % below zero', bad.event_id, bad.account_key
            USING ERRCODE = 'check_violation', CONSTRAINT = 'balance_not_negative';
    END IF;

    -- Invariants 1 and 5 for every entry the statement touched, with all of its postings.
    FOR bad IN
        WITH touched AS (SELECT DISTINCT entry_id FROM new_postings),
        sums AS (
            SELECT p.entry_id, count(*) AS n, sum(p.amount) AS total,
                   string_agg(p.account_key || '=' || p.amount, ';' ORDER BY p.account_key COLLATE "C", p.amount) AS body
            FROM postings p JOIN touched t ON t.entry_id = p.entry_id
            GROUP BY p.entry_id
        ),
        checked AS MATERIALIZED (  -- each hash computed once
            SELECT e.id, e.event_id, e.kind, s.n, s.total, r.event_id AS related_event_id, r.kind AS related_kind,
                   e.hash <> sha256(tc_canonical(e.prev_hash, e.event_id, e.kind, e.occurred_at, e.recorded_at,
                                                 e.volunteer_id, e.org_id, e.opportunity_id, r.event_id, s.body)) AS forged
            FROM sums s
            JOIN entries e ON e.id = s.entry_id
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

-- A reversal mirrors a reversible entry: the same accounts, the amounts negated.
CREATE FUNCTION tc_check_reversal(entry_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    e entries%ROWTYPE;
    related entries%ROWTYPE;
BEGIN
    SELECT * INTO e FROM entries WHERE id = entry_id;
    SELECT * INTO related FROM entries WHERE id = e.related_entry_id;
    IF related.kind IN ('entry_reversed', 'booking_cancelled', 'booking_attended')
        OR EXISTS (
            (SELECT account_key, -amount FROM postings WHERE postings.entry_id = related.id)
            EXCEPT ALL (SELECT account_key, amount FROM postings WHERE postings.entry_id = e.id))
        OR EXISTS (
            (SELECT account_key, amount FROM postings WHERE postings.entry_id = e.id)
            EXCEPT ALL (SELECT account_key, -amount FROM postings WHERE postings.entry_id = related.id))
    THEN
        RAISE EXCEPTION 'bad_reversal: entry % is not the mirror of reversible entry %', e.event_id, related.event_id
            USING ERRCODE = 'check_violation';
    END IF;
END $$;

-- Invariant 5, the link: the new entries continue the chain from the newest earlier entry, in id order.
CREATE FUNCTION tc_entries_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    span record;
    head record;
    bad record;
BEGIN
    PERFORM pg_advisory_xact_lock(tc_chain_lock_key());
    SELECT min(id) AS first_id, count(*) AS n INTO span FROM new_entries;
    -- Nothing but the new entries may sit at or above the first of them: they are appended, never inserted.
    IF (SELECT count(*) FROM entries WHERE id >= span.first_id) <> span.n THEN
        RAISE EXCEPTION 'broken_chain: entries were inserted before the newest entry (id %)', span.first_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT e.id, e.hash INTO head FROM entries e WHERE e.id < span.first_id ORDER BY e.id DESC LIMIT 1;
    SELECT n.event_id, n.id, n.prev_hash, n.expected INTO bad FROM (
        SELECT id, event_id, prev_hash,
               coalesce(lag(hash) OVER (ORDER BY id), head.hash,
                        '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS expected
        FROM new_entries) n
    WHERE n.prev_hash IS DISTINCT FROM n.expected
    ORDER BY n.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'broken_chain: entry % (id %) does not follow the newest entry before it', bad.event_id, bad.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION tc_entry_has_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.id) THEN
        RAISE EXCEPTION 'unbalanced_entry: entry % has no postings', NEW.event_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER postings_inserted AFTER INSERT ON postings REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION tc_postings_inserted();
CREATE TRIGGER entries_inserted AFTER INSERT ON entries REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION tc_entries_inserted();
CREATE CONSTRAINT TRIGGER entries_have_postings AFTER INSERT ON entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tc_entry_has_postings();
"""

DOWNGRADE = """
DROP TRIGGER postings_inserted ON postings;
DROP TRIGGER entries_inserted ON entries;
DROP TRIGGER entries_have_postings ON entries;
DROP FUNCTION tc_postings_inserted, tc_check_reversal, tc_entries_inserted, tc_entry_has_postings, tc_canonical;
ALTER TABLE entries DROP CONSTRAINT entries_prev_hash_key;
CREATE TRIGGER postings_move_balance AFTER INSERT ON postings FOR EACH ROW EXECUTE FUNCTION tc_apply_posting();
CREATE TRIGGER entries_link BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION tc_link_entry();
CREATE CONSTRAINT TRIGGER entries_check AFTER INSERT ON entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tc_check_entry_trigger();
CREATE CONSTRAINT TRIGGER postings_check AFTER INSERT ON postings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tc_check_posting_trigger();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
