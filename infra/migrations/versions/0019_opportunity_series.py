"""Opportunities that repeat: each session is an opportunity of its own, linked to its series by an id.

Revision ID: 0019_opportunity_series
Revises: 0018_corrections_and_audit
Create Date: 2026-12-03

docs/design.md §5.13. `opportunities.series_id` is null for a one-off opportunity (every opportunity listed
before this migration); the index finds a series' sessions. No ledger rule changes: capacity, waiting lists and
bookings stay per opportunity, so per session.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_opportunity_series"
down_revision = "0018_corrections_and_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("opportunities", sa.Column("series_id", sa.Text))
    op.create_index("opportunities_series", "opportunities", ["series_id", "starts_at"],
                    postgresql_where=sa.text("series_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("opportunities_series", table_name="opportunities")
    op.drop_column("opportunities", "series_id")
