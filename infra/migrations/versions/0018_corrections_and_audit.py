"""Corrections' reasons in words, and the append-only audit log of administrative acts.

Revision ID: 0018_corrections_and_audit
Revises: 0017_booking_lapses
Create Date: 2026-12-03

docs/design.md §5.14. `corrections` is an ordinary, erasable table (the reason as typed); `audit_log` is
append-only, with the ledger's triggers, and holds ids and codes only.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0018_corrections_and_audit"
down_revision = "0017_booking_lapses"
branch_labels = None
depends_on = None

REASON_CODES = ("approved_in_error", "wrong_volunteer", "wrong_amount", "duplicate", "made_by_mistake", "other")
ACTIONS = ("entry_correction_requested", "membership_started", "membership_ended", "token_issued", "token_revoked",
           "person_disabled", "consent_recorded", "volunteer_erased")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("target_event_id", sa.Uuid, nullable=False),
        sa.Column("reason_code", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(_in("reason_code", REASON_CODES), name="corrections_reason_code_known"),
        sa.CheckConstraint("char_length(reason) BETWEEN 1 AND 500", name="corrections_reason_length"),
    )
    op.create_index("corrections_by_target", "corrections", ["target_event_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("event_id", sa.Uuid),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.CheckConstraint(_in("action", ACTIONS), name="audit_log_action_known"),
        sa.CheckConstraint("subject ~ '^[a-z_]+:[^[:space:]]+$'", name="audit_log_subject_is_an_id"),
    )
    op.create_index("audit_log_by_subject", "audit_log", ["subject", "id"])
    op.create_index("audit_log_by_action", "audit_log", ["action", "id"])
    op.execute("""
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
""")


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("corrections")
