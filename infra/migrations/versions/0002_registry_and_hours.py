"""The registry (organisations, volunteers, opportunities), personal data kept apart, and the hours flow.

Revision ID: 0002_registry_and_hours
Revises: 0001_ledger
Create Date: 2026-11-21
"""
from __future__ import annotations

from alembic import op

revision = "0002_registry_and_hours"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE organisations (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    area          text NOT NULL,
    kinds         text[] NOT NULL CHECK (kinds <@ ARRAY['community', 'partner'] AND cardinality(kinds) > 0),
    auto_approve  boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Statistical attributes only, keyed by a pseudonymous id; they travel on Kafka.
CREATE TABLE volunteers (
    id                    text PRIMARY KEY,
    area                  text NOT NULL,
    age_band              text,
    seb                   text,
    seb_detail            text,
    first_time_volunteer  boolean,
    consent_stats         boolean NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Personal data lives here and nowhere else, so it can be erased on request while the ledger stays intact.
CREATE TABLE volunteer_profiles (
    volunteer_id  text PRIMARY KEY REFERENCES volunteers (id),
    display_name  text,
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE opportunities (
    id          text PRIMARY KEY,
    partner_id  text NOT NULL REFERENCES organisations (id),
    title       text NOT NULL,
    category    text NOT NULL,
    cost        bigint NOT NULL CHECK (cost > 0),
    capacity    integer CHECK (capacity > 0),
    area        text NOT NULL,
    starts_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Hours as logged; they earn nothing until approved.
CREATE TABLE hours_logs (
    event_id      uuid PRIMARY KEY,
    volunteer_id  text NOT NULL REFERENCES volunteers (id),
    org_id        text NOT NULL REFERENCES organisations (id),
    worked_on     date NOT NULL,
    minutes       integer NOT NULL CHECK (minutes BETWEEN 1 AND 1440),
    activity      text NOT NULL,
    logged_at     timestamptz NOT NULL,
    actor         text NOT NULL
);
CREATE INDEX hours_logs_volunteer_idx ON hours_logs (volunteer_id, worked_on);

-- One decision per log, ever: approved (with the entry that earned the credits) or rejected.
CREATE TABLE hours_decisions (
    log_event_id       uuid PRIMARY KEY REFERENCES hours_logs (event_id),
    decision_event_id  uuid NOT NULL UNIQUE,
    decision           text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    reason             text NOT NULL DEFAULT '',
    entry_id           bigint REFERENCES entries (id),
    decided_at         timestamptz NOT NULL,
    CONSTRAINT approval_has_entry CHECK ((decision = 'approved') = (entry_id IS NOT NULL))
);

CREATE TRIGGER hours_logs_append_only BEFORE UPDATE OR DELETE ON hours_logs
    FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER hours_decisions_append_only BEFORE UPDATE OR DELETE ON hours_decisions
    FOR EACH ROW EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER hours_logs_no_truncate BEFORE TRUNCATE ON hours_logs
    FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
CREATE TRIGGER hours_decisions_no_truncate BEFORE TRUNCATE ON hours_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION tc_refuse_change();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE hours_decisions, hours_logs, opportunities, volunteer_profiles, volunteers, organisations")
