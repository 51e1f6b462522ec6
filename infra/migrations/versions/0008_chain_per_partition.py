"""Tamper evidence without a global lock: a hash chain per partition, one link per committed batch.

Revision ID: 0008_chain_per_partition
Revises: 0007_balance_check_without_limit
Create Date: 2026-12-02

Under revision 0007 every entry named the hash of the entry before it, so every writer of the ledger took one
advisory lock from numbering its entries to its commit, and no number of workers could write faster than one.
Here (docs/design.md §3.3, "The hash chain"):

- `chain_links`: each chain (the ledger consumes one per Kafka partition) is a sequence of links; a committed
  batch adds one link to each chain it wrote, covering the hashes of that batch's entries on the chain (in
  entry-id order) and the chain's previous link. A unique (chain_key, prev_link) refuses a fork: a second link
  after the same head, as a worker that lost its partition and still writes would make. Links of different
  chains never wait for each other.
- entries: a new entry has no prev_hash; its hash covers the entry alone (encoding `tc2`) and it names its
  link. It must be written before its link in the same transaction: an entry for a link that already exists
  (sealed) is refused, and at commit every new entry must have its link.
- `chain_checkpoints`: the head of a chain copied aside at regular intervals, so that verify can tell a
  chain rewritten after a checkpoint.
- The balance update locks the balances it moves in key order first: without the global lock, two batches
  moving the same accounts (an organisation's issuer account, say) would otherwise lock them in whatever order
  each UPDATE met them, and could deadlock.
- The foreign keys of `postings` (to `entries` and `accounts`) and of `hours_decisions` (to `hours_logs` and
  `entries`) become checks once a statement: a foreign key is checked a row at a time, by a query each, and all
  four tables are append-only, so a foreign key's other duty (refusing the deletion of what a row names) is done
  by the append-only triggers already.

Entries written before this migration keep their chain (`tc1`, prev_hash) and stay verifiable as the first
segment of the ledger; a CHECK added NOT VALID makes every new entry a linked one without touching them.
"""
from __future__ import annotations

import importlib

from alembic import op

revision = "0008_chain_per_partition"
down_revision = "0007_balance_check_without_limit"
branch_labels = None
depends_on = None

TABLES = r"""
CREATE TABLE chain_links (
    id           bigint PRIMARY KEY,
    chain_key    text NOT NULL CHECK (chain_key <> ''),
    seq          bigint NOT NULL CHECK (seq >= 1),
    prev_link    bytea NOT NULL CHECK (length(prev_link) = 32),
    link         bytea NOT NULL CHECK (length(link) = 32),
    entry_count  integer NOT NULL CHECK (entry_count >= 1),
    recorded_at  timestamptz NOT NULL,
    CONSTRAINT chain_links_no_fork UNIQUE (chain_key, prev_link),
    CONSTRAINT chain_links_seq_key UNIQUE (chain_key, seq)
);
CREATE SEQUENCE chain_links_id_seq OWNED BY chain_links.id;
ALTER TABLE chain_links ALTER COLUMN id SET DEFAULT nextval('chain_links_id_seq');

CREATE TABLE chain_checkpoints (
    chain_key  text NOT NULL,
    seq        bigint NOT NULL,
    link       bytea NOT NULL CHECK (length(link) = 32),
    taken_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_key, seq),
    FOREIGN KEY (chain_key, seq) REFERENCES chain_links (chain_key, seq)
);

ALTER TABLE entries ALTER COLUMN prev_hash DROP NOT NULL;
ALTER TABLE entries ADD COLUMN link_id bigint;
ALTER TABLE entries ADD CONSTRAINT entries_linked CHECK (link_id IS NOT NULL AND prev_hash IS NULL) NOT VALID;
CREATE INDEX entries_link_idx ON entries (link_id, id) WHERE link_id IS NOT NULL;

ALTER TABLE postings DROP CONSTRAINT postings_entry_id_fkey, DROP CONSTRAINT postings_account_key_fkey;
ALTER TABLE hours_decisions DROP CONSTRAINT hours_decisions_entry_id_fkey,
    DROP CONSTRAINT hours_decisions_log_event_id_fkey;

CREATE TRIGGER chain_links_append_only BEFORE UPDATE OR DELETE ON chain_links
    FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER chain_links_no_truncate BEFORE TRUNCATE ON chain_links
    FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER chain_checkpoints_append_only BEFORE UPDATE OR DELETE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER chain_checkpoints_no_truncate BEFORE TRUNCATE ON chain_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
"""

FUNCTIONS = r"""
-- ledger/hashing.py:canonical_entry, both encodings: `tc2` for a linked entry (no prev_hash), `tc1` for the
-- legacy chain. Written out in full and STABLE so that the planner inlines it into the checks.
CREATE OR REPLACE FUNCTION tc_canonical(prev_hash bytea, event_id uuid, kind text, occurred_at timestamptz,
                                        recorded_at timestamptz, volunteer_id text, org_id text,
                                        opportunity_id text, related_event_id uuid, postings text)
    RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT convert_to(
        CASE WHEN prev_hash IS NULL THEN '3:tc2' ELSE '3:tc1' || '64:' || encode(prev_hash, 'hex') END
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

-- The same bytes from a stored row (verify-style checks and tests).
CREATE OR REPLACE FUNCTION tc_entry_canonical(e entries) RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT tc_canonical(e.prev_hash, e.event_id, e.kind, e.occurred_at, e.recorded_at, e.volunteer_id, e.org_id,
                        e.opportunity_id, (SELECT r.event_id FROM entries r WHERE r.id = e.related_entry_id),
                        (SELECT string_agg(p.account_key || '=' || p.amount, ';'
                                           ORDER BY p.account_key COLLATE "C", p.amount)
                         FROM postings p WHERE p.entry_id = e.id))
$$;

-- ledger/hashing.py:canonical_link.
CREATE FUNCTION tc_link_canonical(chain_key text, seq bigint, prev_link bytea, entry_count bigint,
                                  entry_hashes text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(
        '4:tcl1'
        || length(chain_key) || ':' || chain_key
        || length(seq::text) || ':' || seq::text
        || '64:' || encode(prev_link, 'hex')
        || length(entry_count::text) || ':' || entry_count::text
        || length(coalesce(entry_hashes, '')) || ':' || coalesce(entry_hashes, ''),
        'UTF8')
$$;

-- New entries belong to a link that this transaction has yet to write: a link, once written, is sealed.
CREATE OR REPLACE FUNCTION tc_entries_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    links bigint[];
    bad record;
BEGIN
    SELECT array_agg(DISTINCT link_id) INTO links FROM new_entries;
    SELECT l.id, l.chain_key, l.seq INTO bad FROM chain_links l WHERE l.id = ANY (links) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'broken_chain: entries added to link % (chain %, seq %), which is sealed',
            bad.id, bad.chain_key, bad.seq USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

-- At commit: an entry has postings, and a linked entry has its link.
CREATE OR REPLACE FUNCTION tc_entry_has_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.id) THEN
        RAISE EXCEPTION 'unbalanced_entry: entry % has no postings', NEW.event_id USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.link_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM chain_links WHERE id = NEW.link_id) THEN
        RAISE EXCEPTION 'broken_chain: entry % names link %, which was never written', NEW.event_id, NEW.link_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

-- A link follows its chain's previous link (or the genesis hash, first of its chain) and carries the hash of
-- exactly the entries that name it, in id order.
CREATE FUNCTION tc_links_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    bad record;
BEGIN
    SELECT array_agg(id) INTO ids FROM new_links;
    SELECT l.id, l.chain_key, l.seq, l.entry_count, c.n, prev.link AS expected_prev, l.prev_link,
           l.link <> sha256(tc_link_canonical(l.chain_key, l.seq, l.prev_link, c.n, c.hashes)) AS forged
    INTO bad
    FROM new_links l
    LEFT JOIN (SELECT e.link_id, count(*) AS n, string_agg(encode(e.hash, 'hex'), '' ORDER BY e.id) AS hashes
               FROM entries e WHERE e.link_id = ANY (ids) GROUP BY e.link_id) c ON c.link_id = l.id
    LEFT JOIN chain_links prev ON prev.chain_key = l.chain_key AND prev.seq = l.seq - 1
    WHERE c.n IS NULL OR c.n <> l.entry_count
       OR l.link <> sha256(tc_link_canonical(l.chain_key, l.seq, l.prev_link, c.n, c.hashes))
       OR (l.seq = 1 AND l.prev_link <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
       OR (l.seq > 1 AND prev.link IS DISTINCT FROM l.prev_link)
    LIMIT 1;
    IF FOUND THEN
        IF bad.n IS NULL OR bad.n <> bad.entry_count THEN
            RAISE EXCEPTION 'broken_chain: link % (chain %, seq %) covers % entries but % name it',
                bad.id, bad.chain_key, bad.seq, bad.entry_count, coalesce(bad.n, 0)
                USING ERRCODE = 'integrity_constraint_violation';
        ELSIF bad.forged THEN
            RAISE EXCEPTION 'bad_hash: link % (chain %, seq %) does not carry the hash of its entries',
                bad.id, bad.chain_key, bad.seq USING ERRCODE = 'check_violation';
        ELSE
            RAISE EXCEPTION 'broken_chain: link % (chain %, seq %) does not follow the link before it',
                bad.id, bad.chain_key, bad.seq USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- A checkpoint copies a link as it is.
CREATE FUNCTION tc_checkpoint_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM chain_links WHERE chain_key = NEW.chain_key AND seq = NEW.seq AND link = NEW.link)
    THEN
        RAISE EXCEPTION 'broken_chain: checkpoint of chain % at seq % does not match its link', NEW.chain_key, NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
"""

TRIGGERS = """
CREATE TRIGGER chain_links_inserted AFTER INSERT ON chain_links REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION tc_links_inserted();
CREATE TRIGGER chain_checkpoints_inserted AFTER INSERT ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION tc_checkpoint_inserted();
"""

POSTINGS_INSERTED = r"""
CREATE OR REPLACE FUNCTION tc_postings_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    touched bigint[];
    moved_keys text[];
    moved_deltas bigint[];
    offender uuid;
    found_rows bigint;
BEGIN
    SELECT array_agg(DISTINCT entry_id) INTO touched FROM new_postings;
    SELECT array_agg(account_key ORDER BY account_key), array_agg(delta ORDER BY account_key)
    INTO moved_keys, moved_deltas
    FROM (SELECT account_key, sum(amount)::bigint AS delta FROM new_postings GROUP BY account_key) d;

    -- What the foreign keys checked a row at a time: every posting names an entry and an account that exist.
    SELECT count(*) INTO found_rows FROM entries WHERE id = ANY (touched);
    IF found_rows <> cardinality(touched) THEN
        RAISE EXCEPTION 'missing_entry: postings name an entry that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    -- Every account has its balance row from its opening. Locked in key order before they move, so concurrent
    -- batches moving the same accounts wait for each other rather than deadlock.
    SELECT count(*) INTO found_rows
    FROM (SELECT 1 FROM balances WHERE account_key = ANY (moved_keys) ORDER BY account_key FOR UPDATE) locked;
    IF found_rows <> cardinality(moved_keys) THEN
        RAISE EXCEPTION 'missing_account: postings name an account that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;

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
    WHERE m.kind <> 'issuer' AND m.opening + r.running < 0;
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

#: What the foreign keys of hours_decisions checked a row at a time, once a statement.
DECISIONS_INSERTED = r"""
CREATE FUNCTION tc_decisions_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    logs uuid[];
    entry_ids bigint[];
    found_rows bigint;
BEGIN
    SELECT array_agg(DISTINCT log_event_id), array_agg(DISTINCT entry_id) FILTER (WHERE entry_id IS NOT NULL)
    INTO logs, entry_ids FROM new_decisions;
    SELECT count(*) INTO found_rows FROM hours_logs WHERE event_id = ANY (logs);
    IF found_rows <> cardinality(logs) THEN
        RAISE EXCEPTION 'missing_log: a decision names hours that were never logged'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT count(*) INTO found_rows FROM entries WHERE id = ANY (entry_ids);
    IF found_rows <> coalesce(cardinality(entry_ids), 0) THEN
        RAISE EXCEPTION 'missing_entry: a decision names an entry that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER hours_decisions_inserted AFTER INSERT ON hours_decisions REFERENCING NEW TABLE AS new_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION tc_decisions_inserted();
"""


def _postings_inserted_of_0007() -> str:
    text: str = importlib.import_module("infra.migrations.versions.0007_balance_check_without_limit").POSTINGS_INSERTED
    return text


_PREVIOUS = importlib.import_module("infra.migrations.versions.0005_set_based_checks").UPGRADE


def _function_of_0005(name: str) -> str:
    start = _PREVIOUS.index(f"CREATE FUNCTION {name}(")
    end = _PREVIOUS.index("END $$;", start) + len("END $$;")
    return _PREVIOUS[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _canonical_of_0005() -> str:
    start = _PREVIOUS.index("CREATE FUNCTION tc_canonical(")
    end = _PREVIOUS.index("$$;", _PREVIOUS.index("AS $$", start) + 5) + len("$$;")
    return _PREVIOUS[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _entry_canonical_of_0001() -> str:
    """0001's `tc_entry_canonical`, taken from that migration so that a downgrade restores it exactly."""
    functions: str = importlib.import_module("infra.migrations.versions.0001_ledger").FUNCTIONS
    start = functions.index("CREATE FUNCTION tc_entry_canonical(")
    end = functions.index("$$;", functions.index("AS $$", start) + 5) + len("$$;")
    return functions[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(FUNCTIONS)
    op.execute(TRIGGERS)
    op.execute(POSTINGS_INSERTED)
    op.execute(DECISIONS_INSERTED)


def downgrade() -> None:
    # Only a ledger without linked entries can go back: the single chain cannot describe them.
    op.execute("""
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM entries WHERE link_id IS NOT NULL) THEN
            RAISE EXCEPTION 'the ledger holds entries of chains per partition; it cannot be downgraded';
        END IF;
    END $$;
    """)
    op.execute(_postings_inserted_of_0007())
    op.execute("DROP TRIGGER hours_decisions_inserted ON hours_decisions; DROP FUNCTION tc_decisions_inserted;")
    op.execute("ALTER TABLE postings ADD CONSTRAINT postings_entry_id_fkey FOREIGN KEY (entry_id) REFERENCES entries (id), "
               "ADD CONSTRAINT postings_account_key_fkey FOREIGN KEY (account_key) REFERENCES accounts (key); "
               "ALTER TABLE hours_decisions ADD CONSTRAINT hours_decisions_entry_id_fkey FOREIGN KEY (entry_id) "
               "REFERENCES entries (id), ADD CONSTRAINT hours_decisions_log_event_id_fkey FOREIGN KEY (log_event_id) "
               "REFERENCES hours_logs (event_id);")
    op.execute("DROP TRIGGER chain_links_inserted ON chain_links; "
               "DROP TRIGGER chain_checkpoints_inserted ON chain_checkpoints;")
    op.execute(_function_of_0005("tc_entries_inserted"))
    op.execute(_function_of_0005("tc_entry_has_postings"))
    op.execute(_canonical_of_0005())
    op.execute(_entry_canonical_of_0001())
    op.execute("DROP FUNCTION tc_links_inserted, tc_checkpoint_inserted, tc_link_canonical;")
    op.execute("DROP INDEX entries_link_idx; ALTER TABLE entries DROP CONSTRAINT entries_linked; "
               "ALTER TABLE entries DROP COLUMN link_id; ALTER TABLE entries ALTER COLUMN prev_hash SET NOT NULL;")
    op.execute("DROP TABLE chain_checkpoints, chain_links;")
