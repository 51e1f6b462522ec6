"""API tokens (stored hashed), idempotency keys, and who asked for each event.

Revision ID: 0003_api
Revises: 0002_registry_and_hours
Create Date: 2026-11-22
"""
from __future__ import annotations

from alembic import op

revision = "0003_api"
down_revision = "0002_registry_and_hours"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    role          text NOT NULL CHECK (role IN ('admin', 'lead', 'org', 'volunteer')),
    org_id        text REFERENCES organisations (id),
    volunteer_id  text REFERENCES volunteers (id),
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CONSTRAINT token_scope CHECK (
        (role = 'org') = (org_id IS NOT NULL) AND (role = 'volunteer') = (volunteer_id IS NOT NULL))
);

-- The first answer to a write, kept so the same key and body get it again (scoped to caller and path).
CREATE TABLE idempotency_keys (
    caller        bytea NOT NULL,
    path          text NOT NULL,
    key           text NOT NULL,
    body_sha256   bytea NOT NULL,
    status_code   integer,
    response      bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, path, key)
);

-- Who asked for each event the API produced, so only they (and admins) can look up its outcome.
CREATE TABLE event_requests (
    event_id    uuid PRIMARY KEY,
    actor       text NOT NULL,
    type        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE event_requests, idempotency_keys, api_tokens")
