"""Spend codes and their single use, the guesses refused, who decided hours, and the index for a day's hours.

Revision ID: 0011_spend_codes
Revises: 0010_memberships
Create Date: 2026-12-02

docs/design.md §5.6:

- `spend_codes`: a volunteer's one-time authorisation of one payment to one partner, up to `max_amount`, until
  `expires_at`; written by the API. `code_hash` (SHA-256 of the partner and the digits) is unique per partner:
  the digits are looked up, never stored.
- `spend_code_uses`: the use of a code, written by the ledger worker in the batch that applies the payment. The
  primary key on `code_id` makes a code single use whatever races; append-only, like the ledger.
- `spend_code_failures`: wrong codes by actor, for the durable limit on guessing.
- `hours_decisions.decided_by`: the actor of each decision; `NOT VALID`, so decisions made before keep none.
- `hours_logs (volunteer_id, worked_on)`: the worker sums a volunteer's approved minutes on a day.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_spend_codes"
down_revision = "0010_memberships"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend_codes",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("volunteer_id", sa.Text, sa.ForeignKey("volunteers.id"), nullable=False),
        sa.Column("partner_id", sa.Text, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("max_amount", sa.BigInteger, nullable=False),
        sa.Column("code_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("max_amount > 0", name="spend_code_amount_positive"),
        sa.CheckConstraint("expires_at > created_at", name="spend_code_expires_after_creation"),
        sa.UniqueConstraint("partner_id", "code_hash", name="spend_codes_one_per_partner_and_digits"),
    )
    op.create_index("spend_codes_by_volunteer", "spend_codes", ["volunteer_id", "created_at"])
    op.create_table(
        "spend_code_uses",
        sa.Column("code_id", sa.Uuid, sa.ForeignKey("spend_codes.id"), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("""
CREATE TRIGGER spend_code_uses_append_only BEFORE UPDATE OR DELETE ON spend_code_uses
    FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER spend_code_uses_no_truncate BEFORE TRUNCATE ON spend_code_uses
    FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
""")
    op.create_table(
        "spend_code_failures",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("spend_code_failures_by_actor", "spend_code_failures", ["actor", "failed_at"])
    op.add_column("hours_decisions", sa.Column("decided_by", sa.Text))
    op.execute("ALTER TABLE hours_decisions ADD CONSTRAINT hours_decisions_decided_by_required "
               "CHECK (decided_by IS NOT NULL) NOT VALID")
    op.create_index("hours_logs_by_volunteer_day", "hours_logs", ["volunteer_id", "worked_on"])


def downgrade() -> None:
    op.drop_index("hours_logs_by_volunteer_day", "hours_logs")
    op.execute("ALTER TABLE hours_decisions DROP CONSTRAINT hours_decisions_decided_by_required")
    op.drop_column("hours_decisions", "decided_by")
    op.drop_table("spend_code_failures")
    op.drop_table("spend_code_uses")
    op.drop_table("spend_codes")
