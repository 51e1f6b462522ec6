"""Words people typed leave the append-only tables: activity descriptions and rejection reasons in `event_notes`.

Revision ID: 0021_event_notes
Revises: 0020_erasure
Create Date: 2026-12-03

docs/design.md §5.16. `event_notes` is an ordinary, erasable table keyed by the event id: the API writes an hours
log's description and a rejection's reason there, in the transaction that publishes the event, and the events
carry no text. `hours_logs.activity` and `hours_decisions.reason` become nullable and are no longer written.

The text already in those append-only columns is moved into `event_notes` and the columns emptied, here, with
the append-only triggers disabled for the one statement that empties each (the migration runs as the owner; the
runtime role can never disable a trigger). Left in place, that text could never be erased short of an owner
editing the tables by hand, which is exactly what the triggers exist to rule out; moved once, by reviewed code
inside the migration's transaction, every word becomes erasable and no row of the ledger changes otherwise. The
hash chain covers entries and postings, not these columns (§3.3), so it still verifies.

`volunteers.seb_detail` becomes a code from the Social Mobility Commission's list (ledger.events.SebOccupation):
the free text held before cannot be coded, so it is cleared.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_event_notes"
down_revision = "0020_erasure"
branch_labels = None
depends_on = None

KINDS = ("hours_activity", "rejection_reason")
#: ledger.events.SEB_OCCUPATIONS, written out: a migration does not change when the code does.
SEB_OCCUPATIONS = (
    "modern_professional", "clerical_and_intermediate", "senior_manager_or_administrator", "technical_and_craft",
    "semi_routine_manual_and_service", "routine_manual_and_service", "middle_or_junior_manager",
    "traditional_professional", "long_term_unemployed", "small_business_owner", "other", "dont_know",
    "prefer_not_to_say",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _with_triggers_off(table: str, statement: str) -> None:
    op.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
    op.execute(statement)
    op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")


def upgrade() -> None:
    op.create_table(
        "event_notes",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(_in("kind", KINDS), name="event_notes_kind_known"),
        sa.CheckConstraint("char_length(text) BETWEEN 1 AND 500", name="event_notes_text_length"),
    )
    op.alter_column("hours_logs", "activity", nullable=True)
    op.alter_column("hours_decisions", "reason", nullable=True, server_default=None)
    op.execute("""
INSERT INTO event_notes (event_id, kind, text, written_at)
    SELECT event_id, 'hours_activity', left(btrim(activity), 500), logged_at FROM hours_logs
    WHERE btrim(activity) <> ''
""")
    op.execute("""
INSERT INTO event_notes (event_id, kind, text, written_at)
    SELECT decision_event_id, 'rejection_reason', left(btrim(reason), 500), decided_at FROM hours_decisions
    WHERE decision = 'rejected' AND btrim(reason) <> ''
""")
    _with_triggers_off("hours_logs", "UPDATE hours_logs SET activity = NULL WHERE activity IS NOT NULL")
    _with_triggers_off("hours_decisions",
                       "UPDATE hours_decisions SET reason = NULL WHERE decision = 'rejected' AND reason IS NOT NULL")
    op.execute("UPDATE volunteers SET seb_detail = NULL WHERE seb_detail IS NOT NULL")
    op.create_check_constraint("volunteers_seb_detail_coded", "volunteers", _in("seb_detail", SEB_OCCUPATIONS))


def downgrade() -> None:
    op.drop_constraint("volunteers_seb_detail_coded", "volunteers")
    _with_triggers_off("hours_logs", """
UPDATE hours_logs l SET activity = coalesce(
    (SELECT n.text FROM event_notes n WHERE n.event_id = l.event_id AND n.kind = 'hours_activity'), '')""")
    _with_triggers_off("hours_decisions", """
UPDATE hours_decisions d SET reason = coalesce(
    (SELECT n.text FROM event_notes n WHERE n.event_id = d.decision_event_id AND n.kind = 'rejection_reason'),
    '') WHERE reason IS NULL""")
    op.alter_column("hours_decisions", "reason", nullable=False, server_default="")
    op.alter_column("hours_logs", "activity", nullable=False)
    op.drop_table("event_notes")
