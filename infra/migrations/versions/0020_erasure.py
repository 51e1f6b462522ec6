"""Erasure of a volunteer: when their personal data was erased, kept on the registry's row.

Revision ID: 0020_erasure
Revises: 0019_opportunity_series
Create Date: 2026-12-03

docs/design.md §5.15. `volunteers.erased_at` is null for everyone not erased. The row itself stays, as the
ledger's pseudonymous accounts and the statistics facts name its id; the intake refuses every new event about a
volunteer once it is set. No ledger rule changes.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_erasure"
down_revision = "0019_opportunity_series"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("volunteers", sa.Column("erased_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("volunteers", "erased_at")
