"""The append-only, double-entry ledger with its invariants enforced by PostgreSQL.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-21
"""
from __future__ import annotations

from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE accounts (
    key         text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('volunteer', 'issuer', 'holds', 'partner')),
    owner_id    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT account_key_matches CHECK (key = kind || ':' || owner_id)
);

CREATE TABLE entries (
    id                bigint PRIMARY KEY,
    event_id          uuid NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('hours_approved', 'opportunity_booked', 'booking_cancelled',
                          'booking_attended', 'credits_redeemed', 'credits_gifted', 'entry_reversed')),
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL,
    volunteer_id      text,
    org_id            text,
    opportunity_id    text,
    related_entry_id  bigint REFERENCES entries (id),
    prev_hash         bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash              bytea NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT entries_event_id_key UNIQUE (event_id),
    CONSTRAINT entries_hash_key UNIQUE (hash),
    -- An entry is referred to at most once: reversed once, or a booking settled (cancelled or attended) once.
    CONSTRAINT entries_related_once UNIQUE (related_entry_id),
    CONSTRAINT related_entry_required CHECK (
        (kind IN ('booking_cancelled', 'booking_attended', 'entry_reversed')) = (related_entry_id IS NOT NULL))
);
CREATE SEQUENCE entries_id_seq OWNED BY entries.id;
ALTER TABLE entries ALTER COLUMN id SET DEFAULT nextval('entries_id_seq');
CREATE INDEX entries_volunteer_idx ON entries (volunteer_id, id);

CREATE TABLE postings (
    entry_id     bigint NOT NULL REFERENCES entries (id),
    account_key  text NOT NULL REFERENCES accounts (key),
    amount       bigint NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (entry_id, account_key)
);
CREATE INDEX postings_account_idx ON postings (account_key, entry_id DESC);

CREATE TABLE balances (
    account_key  text PRIMARY KEY REFERENCES accounts (key),
    kind         text NOT NULL,
    balance      bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Invariant 4: only an issuer may go below zero.
    CONSTRAINT balance_not_negative CHECK (kind = 'issuer' OR balance >= 0)
);

CREATE TABLE rejections (
    event_id     uuid PRIMARY KEY,
    reason       text NOT NULL,
    message      text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
"""

FUNCTIONS = r"""
-- Invariant 2: ledger rows are never updated or deleted.
CREATE FUNCTION tc_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append_only: % on % is not allowed; correct mistakes with a reversal entry', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;

-- Balances change only through postings (the trigger below), never by hand.
CREATE FUNCTION tc_guard_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'append_only: balances change only through postings'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

-- Every account has its balance row from the start, so a posting only ever updates it (an upsert would
-- test the CHECK on the proposed new row before it found the existing one).
CREATE FUNCTION tc_open_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balances (account_key, kind, balance) VALUES (NEW.key, NEW.kind, 0);
    RETURN NULL;
END $$;

-- Every posting moves its account's balance in the same transaction.
CREATE FUNCTION tc_apply_posting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE balances SET balance = balance + NEW.amount, updated_at = now() WHERE account_key = NEW.account_key;
    RETURN NULL;
END $$;

CREATE FUNCTION tc_netstring(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT length(coalesce(t, '')) || ':' || coalesce(t, '')
$$;

CREATE FUNCTION tc_timestamp(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The same bytes as ledger/hashing.py:canonical_entry.
CREATE FUNCTION tc_entry_canonical(e entries) RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT convert_to(
        tc_netstring('tc1')
        || tc_netstring(encode(e.prev_hash, 'hex'))
        || tc_netstring(e.event_id::text)
        || tc_netstring(e.kind)
        || tc_netstring(tc_timestamp(e.occurred_at))
        || tc_netstring(tc_timestamp(e.recorded_at))
        || tc_netstring(e.volunteer_id)
        || tc_netstring(e.org_id)
        || tc_netstring(e.opportunity_id)
        || tc_netstring((SELECT r.event_id::text FROM entries r WHERE r.id = e.related_entry_id))
        || tc_netstring((SELECT string_agg(p.account_key || '=' || p.amount, ';'
                                           ORDER BY p.account_key COLLATE "C", p.amount)
                         FROM postings p WHERE p.entry_id = e.id)),
        'UTF8')
$$;

-- Invariant 5, the link: an entry must name the newest entry's hash as its prev_hash. The advisory lock
-- serialises every writer of the chain, whichever way it comes in.
CREATE FUNCTION tc_link_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head entries%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(tc_chain_lock_key());
    SELECT * INTO head FROM entries ORDER BY id DESC LIMIT 1;
    IF NEW.prev_hash IS DISTINCT FROM coalesce(head.hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) THEN
        RAISE EXCEPTION 'broken_chain: entry % does not follow the newest entry %', NEW.event_id, head.event_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF head.id IS NOT NULL AND NEW.id <= head.id THEN
        RAISE EXCEPTION 'broken_chain: entry id % is not after %', NEW.id, head.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION tc_chain_lock_key() RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT 7465636865626::bigint $$;

-- Invariants 1 and 5, checked at commit once all postings are in: two or more postings summing to zero,
-- a reversal that mirrors what it reverses, a settlement that refers to a booking, and a hash that covers it all.
CREATE FUNCTION tc_check_entry(entry_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    e entries%ROWTYPE;
    related entries%ROWTYPE;
    n integer;
    total numeric;
BEGIN
    SELECT * INTO e FROM entries WHERE id = entry_id;
    SELECT count(*), coalesce(sum(amount), 0) INTO n, total FROM postings WHERE postings.entry_id = e.id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'unbalanced_entry: entry % has % postings summing to %', e.event_id, n, total
            USING ERRCODE = 'check_violation';
    END IF;
    IF e.related_entry_id IS NOT NULL THEN
        SELECT * INTO related FROM entries WHERE id = e.related_entry_id;
        IF e.kind IN ('booking_cancelled', 'booking_attended') AND related.kind <> 'opportunity_booked' THEN
            RAISE EXCEPTION 'not_a_booking: entry % settles % which is a %', e.event_id, related.event_id, related.kind
                USING ERRCODE = 'check_violation';
        END IF;
        IF e.kind = 'entry_reversed' AND (
            related.kind IN ('entry_reversed', 'booking_cancelled', 'booking_attended')
            OR EXISTS (
                (SELECT account_key, -amount FROM postings WHERE postings.entry_id = related.id)
                EXCEPT ALL (SELECT account_key, amount FROM postings WHERE postings.entry_id = e.id))
            OR EXISTS (
                (SELECT account_key, amount FROM postings WHERE postings.entry_id = e.id)
                EXCEPT ALL (SELECT account_key, -amount FROM postings WHERE postings.entry_id = related.id)))
        THEN
            RAISE EXCEPTION 'bad_reversal: entry % is not the mirror of reversible entry %', e.event_id, related.event_id
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF e.hash IS DISTINCT FROM sha256(tc_entry_canonical(e)) THEN
        RAISE EXCEPTION 'bad_hash: entry % does not carry the hash of its contents', e.event_id
            USING ERRCODE = 'check_violation';
    END IF;
END $$;

CREATE FUNCTION tc_check_entry_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tc_check_entry(NEW.id);
    RETURN NULL;
END $$;

-- A posting added to an entry from an earlier transaction would change a sealed entry; postings of an
-- entry inserted in this very transaction are already covered by the entry's own check at commit.
CREATE FUNCTION tc_check_posting_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM entries WHERE id = NEW.entry_id
                   AND xmin::text::bigint = (pg_current_xact_id()::text::bigint % 4294967296)) THEN
        PERFORM tc_check_entry(NEW.entry_id);
    END IF;
    RETURN NULL;
END $$;
"""

TRIGGERS = """
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER accounts_append_only BEFORE UPDATE OR DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER rejections_append_only BEFORE UPDATE OR DELETE ON rejections FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER balances_no_truncate BEFORE TRUNCATE ON balances FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER rejections_no_truncate BEFORE TRUNCATE ON rejections FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER balances_guard BEFORE INSERT OR UPDATE OR DELETE ON balances FOR EACH ROW EXECUTE FUNCTION tc_guard_balance();
CREATE TRIGGER accounts_open_balance AFTER INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION tc_open_balance();
CREATE TRIGGER postings_move_balance AFTER INSERT ON postings FOR EACH ROW EXECUTE FUNCTION tc_apply_posting();
CREATE TRIGGER entries_link BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION tc_link_entry();
CREATE CONSTRAINT TRIGGER entries_check AFTER INSERT ON entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tc_check_entry_trigger();
CREATE CONSTRAINT TRIGGER postings_check AFTER INSERT ON postings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tc_check_posting_trigger();
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(FUNCTIONS)
    op.execute(TRIGGERS)


def downgrade() -> None:
    op.execute(
        "DROP TABLE rejections, balances, postings, entries, accounts CASCADE;"
        # IF EXISTS: tc_entry_canonical takes an `entries` row, so the CASCADE above has dropped it already.
        "DROP FUNCTION IF EXISTS tc_refuse_change, tc_guard_balance, tc_open_balance, tc_apply_posting, tc_netstring, tc_timestamp,"
        " tc_entry_canonical, tc_link_entry, tc_chain_lock_key, tc_check_entry, tc_check_entry_trigger,"
        " tc_check_posting_trigger;"
    )
