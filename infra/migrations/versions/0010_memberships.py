"""Memberships, organisations' requests to add a volunteer, and organisations' own references for volunteers.

Revision ID: 0010_memberships
Revises: 0009_token_lifetimes
Create Date: 2026-12-02

docs/design.md §5.4:

- `memberships`: a row a spell of membership (started_at, ended_at), so history stays and a volunteer can
  rejoin; at most one current spell of a volunteer with an organisation (a partial unique index, which is also
  how the ledger worker finds a batch's current memberships). Written by the API and by the worker from
  `MembershipStarted` / `MembershipEnded` on tc.admin.
- `membership_requests`: an organisation's request to add a volunteer, until the volunteer agrees.
- `volunteer_references`: an organisation's own reference for a volunteer, one per volunteer and organisation,
  unique within the organisation; an ordinary table (erasable), never on Kafka.

Backfill: every volunteer becomes a member of each organisation that logged hours for them, from the first such
log, so existing data keeps working under the rule that an organisation logs hours only for its members.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_memberships"
down_revision = "0009_token_lifetimes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memberships",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("org_id", sa.Text, sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("volunteer_id", sa.Text, sa.ForeignKey("volunteers.id"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="membership_ends_after_it_starts"),
    )
    op.create_index("memberships_current", "memberships", ["volunteer_id", "org_id"], unique=True,
                    postgresql_where=sa.text("ended_at IS NULL"))
    op.create_index("memberships_by_org", "memberships", ["org_id", "volunteer_id"])
    op.create_table(
        "membership_requests",
        sa.Column("org_id", sa.Text, sa.ForeignKey("organisations.id"), primary_key=True),
        sa.Column("volunteer_id", sa.Text, sa.ForeignKey("volunteers.id"), primary_key=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "volunteer_references",
        sa.Column("org_id", sa.Text, sa.ForeignKey("organisations.id"), primary_key=True),
        sa.Column("reference", sa.Text, primary_key=True),
        sa.Column("volunteer_id", sa.Text, sa.ForeignKey("volunteers.id"), nullable=False),
        sa.UniqueConstraint("org_id", "volunteer_id", name="volunteer_references_one_per_org"),
    )
    op.execute("""
        INSERT INTO memberships (id, org_id, volunteer_id, started_at)
        SELECT gen_random_uuid(), org_id, volunteer_id, min(logged_at)
        FROM hours_logs GROUP BY org_id, volunteer_id
    """)


def downgrade() -> None:
    op.drop_table("volunteer_references")
    op.drop_table("membership_requests")
    op.drop_table("memberships")
