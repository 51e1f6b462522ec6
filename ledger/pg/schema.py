"""SQLAlchemy Core tables mirroring the migrations (infra/migrations); constraints and triggers live there."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    SmallInteger,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    any_,
    cast,
    func,
    literal,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import ColumnElement

from ledger.pg.bulk import array_literal

metadata = MetaData()


def any_of(column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column = ANY(CAST(:values AS type[]))`: one parameter however many values.

    `IN` binds one parameter a value, each through SQLAlchemy's Python-level processing, and a worker's batch
    asks about thousands at a time. The array travels as one PostgreSQL array literal (`{"a","b"}`) rather
    than as a Python list, which psycopg2 would adapt value by value into `ARRAY['a'::uuid, ...]` for the
    server to parse cast by cast, a cost paid for every value of every batch.
    """
    array = ARRAY(column.type)
    return column == any_(cast(literal(array_literal(values), Text), array))


accounts = Table(
    "accounts",
    metadata,
    Column("key", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("volunteer_id", Text),
    Column("org_id", Text),
    Column("opportunity_id", Text),
    Column("related_entry_id", BigInteger, ForeignKey("entries.id"), unique=True),
    Column("prev_hash", LargeBinary),  # entries of the legacy single chain only
    Column("hash", LargeBinary, nullable=False, unique=True),
    Column("link_id", BigInteger),  # the batch link that covers the entry (None: the legacy chain)
)

chain_links = Table(
    "chain_links",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("chain_key", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("prev_link", LargeBinary, nullable=False),
    Column("link", LargeBinary, nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

chain_checkpoints = Table(
    "chain_checkpoints",
    metadata,
    Column("chain_key", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("link", LargeBinary, nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

postings = Table(
    "postings",
    metadata,
    Column("entry_id", BigInteger, ForeignKey("entries.id"), primary_key=True),
    Column("account_key", Text, ForeignKey("accounts.key"), primary_key=True),
    Column("amount", BigInteger, nullable=False),
)

balances = Table(
    "balances",
    metadata,
    Column("account_key", Text, ForeignKey("accounts.key"), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

rejections = Table(
    "rejections",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

organisations = Table(
    "organisations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("area", Text, nullable=False),
    Column("kinds", ARRAY(Text), nullable=False),
    Column("auto_approve", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

volunteers = Table(
    "volunteers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("area", Text, nullable=False),
    Column("age_band", Text),
    Column("seb", Text),
    Column("seb_detail", Text),
    Column("first_time_volunteer", Boolean),
    Column("consent_stats", Boolean, nullable=False),
    #: When the consent now held was given, as its event says; none before the first change (docs/design.md §5.7).
    Column("consent_changed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: When their personal data was erased (docs/design.md §5.15); the intake refuses new events about them after.
    Column("erased_at", DateTime(timezone=True)),
)

volunteer_profiles = Table(
    "volunteer_profiles",
    metadata,
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), primary_key=True),
    Column("display_name", Text),
    Column("email", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

memberships = Table(
    # Who belongs to which organisation, with history: a row a spell of membership (docs/design.md §5.4).
    "memberships",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("org_id", Text, ForeignKey("organisations.id"), nullable=False),
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

membership_requests = Table(
    # An organisation's request to add a volunteer, until the volunteer agrees (docs/design.md §5.4).
    "membership_requests",
    metadata,
    Column("org_id", Text, ForeignKey("organisations.id"), primary_key=True),
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), primary_key=True),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

volunteer_references = Table(
    # An organisation's own reference for a volunteer (its spreadsheet's number): erasable, never on Kafka.
    "volunteer_references",
    metadata,
    Column("org_id", Text, ForeignKey("organisations.id"), primary_key=True),
    Column("reference", Text, primary_key=True),
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), nullable=False),
    UniqueConstraint("org_id", "volunteer_id", name="volunteer_references_one_per_org"),
)

opportunities = Table(
    "opportunities",
    metadata,
    Column("id", Text, primary_key=True),
    Column("partner_id", Text, ForeignKey("organisations.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("capacity", Integer),
    Column("area", Text, nullable=False),
    Column("starts_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The series a session of a repeating opportunity belongs to (docs/design.md §5.13), null for a one-off.
    Column("series_id", Text),
)

waitlist = Table(
    # Volunteers waiting for a place on a full opportunity, and the offers made to them (docs/design.md §5.8):
    # ordinary and erasable, ids only, never on Kafka.
    "waitlist",
    metadata,
    Column("opportunity_id", Text, ForeignKey("opportunities.id"), primary_key=True),
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), primary_key=True),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("offered_at", DateTime(timezone=True)),
    Column("offered_until", DateTime(timezone=True)),
)

hours_logs = Table(
    "hours_logs",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), nullable=False),
    Column("org_id", Text, ForeignKey("organisations.id"), nullable=False),
    Column("worked_on", Date, nullable=False),
    Column("minutes", Integer, nullable=False),
    #: Written before migration 0021 only: the description is in `event_notes` (docs/design.md §5.16).
    Column("activity", Text),
    #: The kind of activity (ledger.events.ActivityCategory); "other" for hours logged before migration 0014.
    Column("category", Text, nullable=False, server_default="other"),
    Column("logged_at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
)

hours_decisions = Table(
    "hours_decisions",
    metadata,
    Column("log_event_id", Uuid, ForeignKey("hours_logs.event_id"), primary_key=True),
    Column("decision_event_id", Uuid, nullable=False, unique=True),
    Column("decision", Text, nullable=False),
    #: "auto_approve" or "" for an approval; none for a rejection since migration 0021, whose reason is in
    #: `event_notes` (docs/design.md §5.16).
    Column("reason", Text),
    Column("entry_id", BigInteger, ForeignKey("entries.id")),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    #: Who decided (an event's actor); none for decisions made before migration 0011 (docs/design.md §5.6).
    Column("decided_by", Text),
)

spend_codes = Table(
    "spend_codes",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), nullable=False),
    Column("partner_id", Text, ForeignKey("organisations.id"), nullable=False),
    Column("max_amount", BigInteger, nullable=False),
    Column("code_hash", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("partner_id", "code_hash", name="spend_codes_one_per_partner_and_digits"),
)

spend_code_uses = Table(
    "spend_code_uses",
    metadata,
    Column("code_id", Uuid, ForeignKey("spend_codes.id"), primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("used_at", DateTime(timezone=True), nullable=False),
)

spend_code_failures = Table(
    "spend_code_failures",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("actor", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("token_sha256", LargeBinary, nullable=False, unique=True),
    Column("role", Text, nullable=False),
    Column("org_id", Text, ForeignKey("organisations.id")),
    Column("volunteer_id", Text, ForeignKey("volunteers.id")),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    #: Written at most once a minute a token (docs/design.md §5.1), not on every request.
    Column("last_used_at", DateTime(timezone=True)),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("caller", LargeBinary, primary_key=True),
    Column("path", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("body_sha256", LargeBinary, nullable=False),
    Column("status_code", Integer),
    Column("response", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

event_requests = Table(
    "event_requests",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("actor", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: The person who asked through the web app, when one did (docs/design.md §8.2).
    Column("person_id", Uuid),
)

consent_changes = Table(
    # Each time a volunteer's consent to statistics is given or withdrawn (docs/design.md §5.7); erasable.
    "consent_changes",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("volunteer_id", Text, ForeignKey("volunteers.id"), nullable=False),
    Column("consent_stats", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("recorded_by", Text, nullable=False),
    Column("person_id", Uuid),
)

corrections = Table(
    # Why an entry was corrected, in the words of who asked (docs/design.md §5.14): erasable, never on Kafka.
    "corrections",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("target_event_id", Uuid, nullable=False),
    Column("reason_code", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

event_notes = Table(
    # Words typed about an event (an hours log's description, a rejection's reason), keyed by the event id: written
    # by the API with the event, erasable, never on Kafka or in an append-only table (docs/design.md §5.16).
    "event_notes",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

audit_log = Table(
    # Every administrative act (docs/design.md §5.14): append-only, ids and codes only.
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("event_id", Uuid),
    Column("detail", JSONB, nullable=False),
)

# --- the web app's people, sign-in and sessions (docs/design.md §8.1) ----------------------------------------

people = Table(
    "people",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", Text),
    Column("display_name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("org_id", Text, ForeignKey("organisations.id")),
    Column("volunteer_id", Text, ForeignKey("volunteers.id")),
    Column("invited_by", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("disabled_at", DateTime(timezone=True)),
)

sign_in_links = Table(
    "sign_in_links",
    metadata,
    Column("token_sha256", LargeBinary, primary_key=True),
    Column("person_id", Uuid, ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

sign_in_cards = Table(
    "sign_in_cards",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("person_id", Uuid, ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
    Column("code_sha256", LargeBinary, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("voided_at", DateTime(timezone=True)),
    Column("used_at", DateTime(timezone=True)),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_sha256", LargeBinary, primary_key=True),
    Column("person_id", Uuid, ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

sign_in_requests = Table(
    "sign_in_requests",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("email_sha256", LargeBinary, nullable=False),
    Column("address", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
)

stats_facts = Table(
    "stats_facts",
    metadata,
    Column("entry_id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("occurred_on", Date, nullable=False),
    Column("volunteer_id", Text, nullable=False),
    Column("other_volunteer_id", Text),
    Column("org_id", Text),
    Column("category", Text),
    #: Hours' kind of activity (approved hours and their reversals); none for spending and gifts.
    Column("activity_category", Text),
    Column("amount", BigInteger, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("sign", Integer, nullable=False),
    Column("original_entry_id", BigInteger),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: The facts added up a figure per column by month, volunteer and the facts' groups, and by month and volunteer
#: alone; each volunteer's first approved hours never reversed: kept by a trigger on stats_facts (migrations 0022
#: and 0023, stats/rollup_sql.py), read by the figures (docs/design.md §5.3).
def _rollup_columns() -> list[Column]:  # type: ignore[type-arg]
    """Each figure's sum, each kind's count of facts, and the kinds' bits (stats/rollup_sql.py)."""
    sums = [Column(name, BigInteger if name.startswith("credits_") else Integer, nullable=False)
            for name in ("minutes", "credits_earned", "credits_spent", "credits_gifted", "bookings", "attendances",
                         "cancellations", "redemptions")]
    counts = [Column(f"{name}_facts", Integer, nullable=False)
              for name in ("hours", "attended", "redeemed", "gifted", "booked", "cancelled", "other")]
    return [*sums, *counts, Column("kinds", SmallInteger, nullable=False)]


stats_cells = Table(
    "stats_cells",
    metadata,
    Column("month", Date, nullable=False),
    Column("volunteer_id", Text, nullable=False),
    Column("org_id", Text),
    Column("category", Text),
    Column("activity_category", Text),
    *_rollup_columns(),
)

stats_volunteer_months = Table(
    "stats_volunteer_months",
    metadata,
    Column("month", Date, primary_key=True),
    Column("volunteer_id", Text, primary_key=True),
    *_rollup_columns(),
    Column("prev_active", Date),
    Column("quarter", Date, nullable=False),
)

stats_first_hours = Table(
    "stats_first_hours",
    metadata,
    Column("volunteer_id", Text, primary_key=True),
    Column("first_on", Date),
)

areas = Table(
    "areas",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("need_decile", Integer, nullable=False),
    Column("population", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
