"""The prompts service's tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from llmops.db import NAMING_CONVENTION

METADATA = MetaData(naming_convention=NAMING_CONVENTION)

prompts = Table(
    "prompts",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", name="uq_prompts_project_name"),
)

#: Immutable: the runtime role may only insert and read them.
prompt_versions = Table(
    "prompt_versions",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("prompt_id", UUID(as_uuid=False), ForeignKey("prompts.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("template", JSONB, nullable=False),
    Column("parameters", JSONB, nullable=False),
    Column("hash", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("author", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("prompt_id", "version", name="uq_prompt_versions_prompt_id_version"),
)

labels = Table(
    "labels",
    METADATA,
    Column("prompt_id", UUID(as_uuid=False), ForeignKey("prompts.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("version_id", UUID(as_uuid=False), ForeignKey("prompt_versions.id"), nullable=False),
    Column("protected", Boolean, nullable=False, server_default="false"),
    Column("updated_by", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("prompt_id", "name", name="pk_labels"),
)

#: Every move of every label, append-only.
label_moves = Table(
    "label_moves",
    METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("prompt_id", UUID(as_uuid=False), ForeignKey("prompts.id"), nullable=False),
    Column("label", Text, nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=False),
    Column("protected", Boolean, nullable=False),
    Column("moved_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("moved_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

test_cases = Table(
    "test_cases",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("prompt_id", UUID(as_uuid=False), ForeignKey("prompts.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("variables", JSONB, nullable=False),
    Column("expect", JSONB, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("prompt_id", "name", name="uq_test_cases_prompt_id_name"),
)
