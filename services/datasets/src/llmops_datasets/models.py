"""The datasets service's tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from llmops.db import NAMING_CONVENTION

METADATA = MetaData(naming_convention=NAMING_CONVENTION)

datasets = Table(
    "datasets",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("format", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", name="uq_datasets_project_name"),
)

#: Immutable once written, except for deprecation.
dataset_versions = Table(
    "dataset_versions",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("dataset_id", UUID(as_uuid=False), ForeignKey("datasets.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("uri", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("row_hashes_sha256", Text, nullable=False),
    Column("stats", JSONB, nullable=False),
    Column("splits", JSONB, nullable=False),
    Column("cleaning", JSONB, nullable=False),
    Column("source_type", Text, nullable=False),
    Column("invalid_rows_dropped", BigInteger, nullable=False, server_default="0"),
    Column("errors", JSONB, nullable=False, server_default="[]"),
    Column("parent_version_id", UUID(as_uuid=False), ForeignKey("dataset_versions.id"), nullable=True),
    Column("diff", JSONB, nullable=True),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deprecated_at", DateTime(timezone=True), nullable=True),
    Column("deprecated_by", Text, nullable=True),
    Column("deprecation_reason", Text, nullable=True),
    UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_id_version"),
    UniqueConstraint("dataset_id", "sha256", name="uq_dataset_versions_dataset_id_sha256"),
)

#: Imports requested by event, by their idempotency key (in its project, so that no project's keys can block
#: another's): the answer each got, a version or the reason it failed.
dataset_imports = Table(
    "dataset_imports",
    METADATA,
    Column("project", Text, primary_key=True),
    Column("import_id", Text, primary_key=True),
    Column("dataset", Text, nullable=False),
    Column("version_id", UUID(as_uuid=False), ForeignKey("dataset_versions.id"), nullable=True),
    Column("failure", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
