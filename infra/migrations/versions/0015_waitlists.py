"""Waiting lists for full opportunities, and the index the worker's capacity rule counts bookings by.

Revision ID: 0015_waitlists
Revises: 0014_consent_history
Create Date: 2026-12-02

docs/design.md §5.8. `waitlist` is an ordinary, erasable table (ids only, never on Kafka); an offer is a row
with `offered_until`. The partial index on `entries` lets the worker count an opportunity's open bookings by
probing that opportunity's bookings only.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_waitlists"
down_revision = "0014_consent_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "waitlist",
        sa.Column("opportunity_id", sa.Text, sa.ForeignKey("opportunities.id"), primary_key=True),
        sa.Column("volunteer_id", sa.Text, sa.ForeignKey("volunteers.id"), primary_key=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True)),
        sa.Column("offered_until", sa.DateTime(timezone=True)),
        sa.CheckConstraint("(offered_at IS NULL) = (offered_until IS NULL)", name="waitlist_offer_whole"),
    )
    op.create_index("waitlist_in_order", "waitlist", ["opportunity_id", "joined_at", "volunteer_id"])
    op.create_index("waitlist_by_volunteer", "waitlist", ["volunteer_id"])
    op.create_index("entries_bookings_by_opportunity", "entries", ["opportunity_id"],
                    postgresql_where=sa.text("kind = 'opportunity_booked'"))


def downgrade() -> None:
    op.drop_index("entries_bookings_by_opportunity", table_name="entries")
    op.drop_table("waitlist")
