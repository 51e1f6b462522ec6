"""Hours carry a kind of activity, and the statistics facts carry it too.

Revision ID: 0016_activity_categories
Revises: 0015_waitlists
Create Date: 2026-12-02

docs/design.md §5.9. Hours logged before this migration are "other", as their events decode. Facts recorded
before it keep a null activity category, which the statistics read as "other": both tables are append-only, so
they are not rewritten.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_activity_categories"
down_revision = "0015_waitlists"
branch_labels = None
depends_on = None

CATEGORIES = ("befriending", "food_and_essentials", "environment", "sport_and_wellbeing", "arts_and_culture",
              "education_and_mentoring", "admin_and_fundraising", "other")
_KNOWN = ", ".join(repr(c) for c in CATEGORIES)


def upgrade() -> None:
    op.add_column("hours_logs", sa.Column("category", sa.Text, nullable=False, server_default="other"))
    op.create_check_constraint("hours_logs_category_known", "hours_logs", f"category IN ({_KNOWN})")
    op.add_column("stats_facts", sa.Column("activity_category", sa.Text))
    op.create_check_constraint("stats_facts_activity_category_known", "stats_facts",
                               f"activity_category IS NULL OR activity_category IN ({_KNOWN})")


def downgrade() -> None:
    op.drop_column("stats_facts", "activity_category")
    op.drop_column("hours_logs", "category")
