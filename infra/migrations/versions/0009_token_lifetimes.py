"""Tokens that expire, and when each was last used.

Revision ID: 0009_token_lifetimes
Revises: 0008_chain_per_partition
Create Date: 2026-12-02

docs/design.md §5.1 ("Token lifetimes and revocation"): every token carries `expires_at`; a token created
before this revision gets one 365 days from the migration, so no credential is left without an end.
`last_used_at` is written at most once a minute a token, so that reading it costs no write per request.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_token_lifetimes"
down_revision = "0008_chain_per_partition"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE api_tokens SET expires_at = now() + interval '365 days' WHERE expires_at IS NULL")
    op.alter_column("api_tokens", "expires_at", nullable=False)


def downgrade() -> None:
    op.drop_column("api_tokens", "last_used_at")
    op.drop_column("api_tokens", "expires_at")
