"""The balance check of the postings trigger planned for every row, not for the first.

Revision ID: 0007_balance_check_without_limit
Revises: 0006_scale_with_the_ledger
Create Date: 2026-12-01

0006's check ended in `LIMIT 1`: "find one posting that takes a balance below zero". The planner, expecting
thousands of such rows (it cannot know the balances), chose the plan that finds the first one soonest: a nested
loop comparing every posting of the statement with every balance it moved. There is almost never such a row, so
the loop runs to the end, and its cost grows with the product of a batch's postings and accounts, that is with
the square of the batch. Without the LIMIT it is planned for the
whole result, a hash join on the account, and `SELECT INTO` still stops at the first row. Same rule, same error.
"""
from __future__ import annotations

import importlib

from alembic import op

revision = "0007_balance_check_without_limit"
down_revision = "0006_scale_with_the_ledger"
branch_labels = None
depends_on = None

_LIMITED = "    WHERE m.kind <> 'issuer' AND m.opening + r.running < 0\n    LIMIT 1;\n"
_UNLIMITED = "    WHERE m.kind <> 'issuer' AND m.opening + r.running < 0;\n"


def _function_of_0006() -> str:
    """0006's `tc_postings_inserted`, taken from that migration so that a downgrade restores it exactly."""
    text: str = importlib.import_module("infra.migrations.versions.0006_scale_with_the_ledger").POSTINGS_INSERTED
    assert text.count(_LIMITED) == 1, "0006's balance check is not where this migration expects it"
    return text


POSTINGS_INSERTED = _function_of_0006().replace(_LIMITED, _UNLIMITED)


def upgrade() -> None:
    op.execute(POSTINGS_INSERTED)


def downgrade() -> None:
    op.execute(_function_of_0006())
