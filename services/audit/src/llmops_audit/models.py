"""The audit service's tables: the append-only log, its head, and the signed checkpoints."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Integer, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import UUID

from llmops.db import NAMING_CONVENTION

METADATA = MetaData(naming_convention=NAMING_CONVENTION)

#: One row per event, never updated or deleted (a trigger refuses it; the service's role may only insert/select).
audit_log = Table(
    "audit_log",
    METADATA,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("actor", Text),
    Column("project", Text),
    Column("correlation_id", Text),
    Column("causation_id", Text),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("event", Text, nullable=False),  # canonical JSON (sensitive fields hashed): what the hash covers
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_audit_log_subject_seq", "subject", "seq"),
    Index("ix_audit_log_actor_seq", "actor", "seq"),
    Index("ix_audit_log_type_seq", "type", "seq"),
    Index("ix_audit_log_project_seq", "project", "seq"),
    Index("ix_audit_log_correlation_id", "correlation_id"),
    Index("ix_audit_log_causation_id", "causation_id"),
    Index("ix_audit_log_time", "time"),
)

#: The chain's head, one row; appenders lock it, so entries get gapless sequence numbers in one order.
chain_head = Table(
    "chain_head",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", Text, nullable=False),
)

#: Signed heads, also published as audit.checkpoint.signed so copies are held outside this database.
checkpoints = Table(
    "checkpoints",
    METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", Text, nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
    Column("key_id", Text, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("signature", Text, nullable=False),
    Index("ix_checkpoints_seq", "seq"),
)
