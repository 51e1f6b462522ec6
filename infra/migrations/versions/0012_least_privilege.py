"""The trigger functions that write balances run as the schema's owner, so the runtime role needs no write on them.

Revision ID: 0012_least_privilege
Revises: 0011_spend_codes
Create Date: 2026-12-02

docs/design.md §6.1: the API and workers connect as a role that may only SELECT `balances`. Two trigger
functions write that table on their behalf: `tc_postings_inserted` (moves the balances of a postings
statement) and `tc_open_balance` (opens the row of a new account). As SECURITY DEFINER they run as their owner,
who ran this migration. Their `search_path` is fixed to this schema and `pg_temp` (last), so a caller cannot
put objects of its own in front of the tables and functions they name (docs/design.md §3.2, 0012). EXECUTE is
revoked from PUBLIC: nobody needs to call them but the triggers, and PostgreSQL checks no privilege when it
fires a trigger.
"""
from __future__ import annotations

from alembic import op

revision = "0012_least_privilege"
down_revision = "0011_spend_codes"
branch_labels = None
depends_on = None

#: The functions, with their argument lists, that write `balances` from a trigger.
DEFINER_FUNCTIONS = ("tc_postings_inserted()", "tc_open_balance()")


def upgrade() -> None:
    for function in DEFINER_FUNCTIONS:
        # format(%I) quotes the schema's name; current_schema() is where the migrations created everything.
        op.execute(f"""
            DO $$ BEGIN
                EXECUTE format('ALTER FUNCTION {function} SECURITY DEFINER SET search_path = %I, pg_temp',
                               current_schema());
            END $$;
        """)
        op.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")


def downgrade() -> None:
    for function in DEFINER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SECURITY INVOKER RESET search_path")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
