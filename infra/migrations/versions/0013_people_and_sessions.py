"""People who sign in to the web app, their one-time sign-in links and cards, and their sessions.

Revision ID: 0013_people_and_sessions
Revises: 0012_least_privilege
Create Date: 2026-12-02

docs/design.md §8.1. Every table here is erasable (a person's e-mail address and sessions go when they are
erased) and none is append-only; none travels on Kafka. Secrets (link tokens, card codes, session ids) are kept
as SHA-256 digests only.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_people_and_sessions"
down_revision = "0012_least_privilege"
branch_labels = None
depends_on = None

ROLES = ("admin", "lead", "coordinator", "front_desk", "volunteer")


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("email", sa.Text),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("org_id", sa.Text, sa.ForeignKey("organisations.id")),
        sa.Column("volunteer_id", sa.Text, sa.ForeignKey("volunteers.id")),
        sa.Column("invited_by", sa.Uuid),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("disabled_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="people_role_known"),
        sa.CheckConstraint("(role IN ('coordinator', 'front_desk')) = (org_id IS NOT NULL)",
                           name="people_staff_have_an_organisation"),
        sa.CheckConstraint("(role = 'volunteer') = (volunteer_id IS NOT NULL)", name="people_volunteer_has_an_id"),
        sa.CheckConstraint("email IS NULL OR email = lower(email)", name="people_email_lower_case"),
    )
    op.create_index("people_by_email", "people", ["email"], unique=True, postgresql_where=sa.text("email IS NOT NULL"))
    op.create_index("people_by_volunteer", "people", ["volunteer_id"], unique=True,
                    postgresql_where=sa.text("volunteer_id IS NOT NULL"))
    op.create_table(
        "sign_in_links",
        sa.Column("token_sha256", sa.LargeBinary, primary_key=True),
        sa.Column("person_id", sa.Uuid, sa.ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "sign_in_cards",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("person_id", sa.Uuid, sa.ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code_sha256", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True)),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.create_index("sign_in_cards_current", "sign_in_cards", ["person_id"], unique=True,
                    postgresql_where=sa.text("voided_at IS NULL"))
    op.create_table(
        "web_sessions",
        sa.Column("id_sha256", sa.LargeBinary, primary_key=True),
        sa.Column("person_id", sa.Uuid, sa.ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("web_sessions_by_person", "web_sessions", ["person_id"])
    op.create_table(
        "sign_in_requests",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("email_sha256", sa.LargeBinary, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("sign_in_requests_by_email", "sign_in_requests", ["email_sha256", "requested_at"])
    op.create_index("sign_in_requests_by_address", "sign_in_requests", ["address", "requested_at"])
    op.add_column("event_requests", sa.Column("person_id", sa.Uuid))


def downgrade() -> None:
    op.drop_column("event_requests", "person_id")
    for table in ("sign_in_requests", "web_sessions", "sign_in_cards", "sign_in_links", "people"):
        op.drop_table(table)
