"""SQLAlchemy Core tables mirroring the migrations (infra/migrations); constraints and triggers live there."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, LargeBinary, MetaData, Table, Text, Uuid

metadata = MetaData()

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
    Column("prev_hash", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False, unique=True),
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
