"""Consent to statistics that can change, with its history.

Revision ID: 0014_consent_history
Revises: 0013_people_and_sessions
Create Date: 2026-12-02

docs/design.md §5.7. An ordinary, erasable table (a volunteer's history goes with them when they are erased),
never on Kafka as such. Volunteers registered before it have one row, dated at their registration, with the
answer they gave then.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_consent_history"
down_revision = "0013_people_and_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_changes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("volunteer_id", sa.Text, sa.ForeignKey("volunteers.id"), nullable=False),
        sa.Column("consent_stats", sa.Boolean, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("person_id", sa.Uuid),
    )
    # When the answer now held was given (the event's time): a consent event older than it, met late by the worker,
    # changes nothing (docs/design.md §5.7).
    op.add_column("volunteers", sa.Column("consent_changed_at", sa.DateTime(timezone=True)))
    op.create_index("consent_changes_by_volunteer", "consent_changes", ["volunteer_id", "changed_at"])
    op.execute("INSERT INTO consent_changes (volunteer_id, consent_stats, changed_at, recorded_by) "
               "SELECT id, consent_stats, created_at, 'registration' FROM volunteers")


def downgrade() -> None:
    op.drop_table("consent_changes")
    op.drop_column("volunteers", "consent_changed_at")
