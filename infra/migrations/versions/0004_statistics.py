"""Participation statistics: one fact per ledger entry (idempotent by entry id) and the areas' need.

Revision ID: 0004_statistics
Revises: 0003_api
Create Date: 2026-11-22
"""
from __future__ import annotations

from alembic import op

revision = "0004_statistics"
down_revision = "0003_api"
branch_labels = None
depends_on = None

UPGRADE = """
-- Written by the statistics processor from tc.ledger. A reversal is stored as a negative fact of the kind
-- and period of the entry it reverses, so corrected figures stay where the mistake was made.
CREATE TABLE stats_facts (
    entry_id            bigint PRIMARY KEY,
    kind                text NOT NULL,
    occurred_on         date NOT NULL,
    volunteer_id        text NOT NULL,
    other_volunteer_id  text,
    org_id              text,
    category            text,
    amount              bigint NOT NULL,
    minutes             integer NOT NULL DEFAULT 0,
    sign                smallint NOT NULL CHECK (sign IN (-1, 1)),
    original_entry_id   bigint,  -- for a reversal: the entry it reverses
    recorded_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stats_facts_period_idx ON stats_facts (occurred_on, kind);
CREATE INDEX stats_facts_volunteer_idx ON stats_facts (volunteer_id, occurred_on);
CREATE INDEX stats_facts_original_idx ON stats_facts (original_entry_id) WHERE original_entry_id IS NOT NULL;

-- Areas a programme reports on, with their need (e.g. an Index of Multiple Deprivation decile, 1 = most deprived).
CREATE TABLE areas (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    need_decile smallint NOT NULL CHECK (need_decile BETWEEN 1 AND 10),
    population  integer NOT NULL CHECK (population > 0),
    source      text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE areas, stats_facts")
