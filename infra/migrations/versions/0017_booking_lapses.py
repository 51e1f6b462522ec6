"""Two more ways to settle a booking: a hold that lapsed, and a volunteer who did not come.

Revision ID: 0017_booking_lapses
Revises: 0016_activity_categories
Create Date: 2026-12-03

docs/design.md §5.11. The entry kinds `booking_expired` and `booking_no_show` settle a booking as
`booking_cancelled` and `booking_attended` do, under the same rules in PostgreSQL:

- `entries_kind_check` lists them among the kinds;
- `related_entry_required`: each names the entry it settles;
- `tc_postings_inserted` refuses one that settles anything but an `opportunity_booked` entry (`not_a_booking`);
- `tc_check_reversal` refuses a reversal of one (`bad_reversal`): a settlement is final;
- `entries_related_once` (unchanged, `UNIQUE (related_entry_id)`) already lets a booking be settled once, by
  whichever kind comes first.

`tc_postings_inserted` is replaced, so it is made `SECURITY DEFINER` with its `search_path` again, as 0012 did:
`CREATE OR REPLACE` resets both (docs/design.md §3.2).
"""
from __future__ import annotations

import importlib

from alembic import op

revision = "0017_booking_lapses"
down_revision = "0016_activity_categories"
branch_labels = None
depends_on = None

_OLD_SETTLEMENTS = "('booking_cancelled', 'booking_attended')"
_NEW_SETTLEMENTS = "('booking_cancelled', 'booking_attended', 'booking_expired', 'booking_no_show')"
_OLD_FINAL = "('entry_reversed', 'booking_cancelled', 'booking_attended')"
_NEW_FINAL = "('entry_reversed', 'booking_cancelled', 'booking_attended', 'booking_expired', 'booking_no_show')"

_OLD_KINDS = ("'hours_approved', 'opportunity_booked', 'booking_cancelled', 'booking_attended', 'credits_redeemed', "
              "'credits_gifted', 'entry_reversed'")
_NEW_KINDS = _OLD_KINDS + ", 'booking_expired', 'booking_no_show'"
_OLD_RELATED = "'booking_cancelled', 'booking_attended', 'entry_reversed'"
_NEW_RELATED = _OLD_RELATED + ", 'booking_expired', 'booking_no_show'"


def _postings_inserted_of_0008() -> str:
    """0008's `tc_postings_inserted`, taken from that migration so that a downgrade restores it exactly."""
    text: str = importlib.import_module("infra.migrations.versions.0008_chain_per_partition").POSTINGS_INSERTED
    assert text.count(_OLD_SETTLEMENTS) == 2, "0008's settlement check is not where this migration expects it"
    return text


def _check_reversal_of_0005() -> str:
    """0005's `tc_check_reversal`, the one in force since, for the same reason."""
    upgrade_sql: str = importlib.import_module("infra.migrations.versions.0005_set_based_checks").UPGRADE
    start = upgrade_sql.index("CREATE FUNCTION tc_check_reversal(")
    end = upgrade_sql.index("END $$;", start) + len("END $$;")
    text = upgrade_sql[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    assert text.count(_OLD_FINAL) == 1, "0005's reversal check is not where this migration expects it"
    return text


POSTINGS_INSERTED = _postings_inserted_of_0008().replace(_OLD_SETTLEMENTS, _NEW_SETTLEMENTS)
CHECK_REVERSAL = _check_reversal_of_0005().replace(_OLD_FINAL, _NEW_FINAL)


def _definer_again() -> None:
    """0012's attributes of `tc_postings_inserted`, which a `CREATE OR REPLACE` resets."""
    upgrade_0012 = importlib.import_module("infra.migrations.versions.0012_least_privilege").upgrade
    upgrade_0012()


def _constraints(kinds: str, related: str) -> str:
    return f"""
    ALTER TABLE entries DROP CONSTRAINT entries_kind_check,
        ADD CONSTRAINT entries_kind_check CHECK (kind IN ({kinds}));
    ALTER TABLE entries DROP CONSTRAINT related_entry_required,
        ADD CONSTRAINT related_entry_required CHECK ((kind IN ({related})) = (related_entry_id IS NOT NULL));
    """


def upgrade() -> None:
    op.execute(_constraints(_NEW_KINDS, _NEW_RELATED))
    op.execute(POSTINGS_INSERTED)
    op.execute(CHECK_REVERSAL)
    _definer_again()


def downgrade() -> None:
    # The narrower checks would refuse the entries of the new kinds, which are append-only: no way back with them.
    op.execute("""
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM entries WHERE kind IN ('booking_expired', 'booking_no_show')) THEN
            RAISE EXCEPTION 'the ledger holds lapsed or missed bookings; it cannot be downgraded below 0017';
        END IF;
    END $$;
    """)
    op.execute(_constraints(_OLD_KINDS, _OLD_RELATED))
    op.execute(_postings_inserted_of_0008())
    op.execute(_check_reversal_of_0005())
    _definer_again()
