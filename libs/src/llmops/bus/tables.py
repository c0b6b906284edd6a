"""The outbox and inbox tables every service database holds (added to its migrations with its own tables)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from llmops.db import NAMING_CONVENTION

BUS_METADATA = MetaData(naming_convention=NAMING_CONVENTION)

#: Events waiting to be published; written in the same transaction as the state change they describe.
outbox = Table(
    "outbox",
    BUS_METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
    # A row the relay can never send (too large, invalid for the broker) is parked: kept, with why, and passed over.
    Column("parked_at", DateTime(timezone=True), nullable=True),
    Column("park_reason", Text, nullable=True),
    Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL AND parked_at IS NULL")),
    Index("ix_outbox_parked", "id", postgresql_where=text("parked_at IS NOT NULL")),
)

#: Events a consumer has applied; its primary key makes a redelivered event a no-op in the same transaction.
inbox = Table(
    "inbox",
    BUS_METADATA,
    Column("consumer", Text, primary_key=True),
    Column("event_id", UUID(as_uuid=False), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
