"""The training service's tables: base models, projections of dataset and prompt versions, jobs (with their
metrics, logs and checkpoints), and the model registry (versions, aliases and their history)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
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

base_models = Table(
    "base_models",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("source", Text, nullable=False),  # upload | hub
    Column("manifest_sha256", Text),
    Column("size_bytes", BigInteger),
    Column("hub_id", Text),
    Column("revision", Text),
    Column("architecture", Text),
    Column("parameters", BigInteger),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", name="uq_base_models_project_name"),
)

#: The service's projection of ``dataset.version.*`` events: what a job may train on.
dataset_versions = Table(
    "dataset_versions",
    METADATA,
    Column("version_id", Text, primary_key=True),
    Column("dataset_id", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("format", Text, nullable=False),
    Column("uri", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("splits", JSONB, nullable=False),
    Column("deprecated", Boolean, nullable=False, server_default="false"),
    Column("deprecated_reason", Text),
    UniqueConstraint("project", "name", "version", name="uq_dataset_versions_project_name_version"),
)

#: Tombstones: each version's earliest ``dataset.version.deprecated``, kept even before the version itself has arrived
#: (events of a subject, relays and replays come in any order); applied to ``dataset_versions`` whichever comes last.
dataset_version_deprecations = Table(
    "dataset_version_deprecations",
    METADATA,
    Column("version_id", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("deprecated_at", DateTime(timezone=True), nullable=False),
    Column("event_id", Text, nullable=False),
)

#: The service's projection of ``prompt.version.created`` events.
prompt_versions = Table(
    "prompt_versions",
    METADATA,
    Column("version_id", Text, primary_key=True),
    Column("prompt_id", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("template", JSONB, nullable=False),
    Column("hash", Text, nullable=False),
    UniqueConstraint("project", "name", "version", name="uq_prompt_versions_project_name_version"),
)

jobs = Table(
    "jobs",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("status", Text, nullable=False),  # queued | running | completed | failed | cancelled
    Column("pool", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("hyperparameters", JSONB, nullable=False),
    Column("base_model_id", UUID(as_uuid=False), ForeignKey("base_models.id"), nullable=False),
    Column("dataset_version_id", Text, nullable=False),
    Column("prompt_version_id", Text),
    Column("request", JSONB, nullable=False),  # the training.job.requested payload
    Column("requested_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("worker", Text),
    Column("lease_until", DateTime(timezone=True)),
    Column("attempt", Integer, nullable=False, server_default="0"),
    # starts that were hand-overs by a stopping worker: they do not count towards the worker's max_attempts
    Column("handovers", Integer, nullable=False, server_default="0"),
    Column("resumed_from_step", Integer),
    Column("step", Integer, nullable=False, server_default="0"),
    Column("max_steps", Integer),
    Column("progress", JSONB),
    Column("metrics", JSONB),
    Column("error", Text),
    Column("cancel_requested_by", Text),
    Column("model_version_id", UUID(as_uuid=False)),
)

job_metrics = Table(
    "job_metrics",
    METADATA,
    Column("job_id", UUID(as_uuid=False), ForeignKey("jobs.id"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("epoch", Float),
    Column("loss", Float),
    Column("learning_rate", Float),
    Column("tokens_per_second", Float),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "step", name="pk_job_metrics"),
)

job_logs = Table(
    "job_logs",
    METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("job_id", UUID(as_uuid=False), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("level", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("worker", Text),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

job_checkpoints = Table(
    "job_checkpoints",
    METADATA,
    Column("job_id", UUID(as_uuid=False), ForeignKey("jobs.id"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("manifest_sha256", Text, nullable=False),
    Column("worker", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "step", name="pk_job_checkpoints"),
)

#: Immutable: one per completed job (the unique job id is what makes a resumed job register once).
model_versions = Table(
    "model_versions",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("job_id", UUID(as_uuid=False), ForeignKey("jobs.id"), nullable=False, unique=True),
    Column("kind", Text, nullable=False),  # adapter | full
    Column("base_model_id", UUID(as_uuid=False), ForeignKey("base_models.id"), nullable=False),
    Column("manifest_sha256", Text, nullable=False),
    Column("merged_manifest_sha256", Text),
    Column("lineage", JSONB, nullable=False),
    Column("metrics", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", "version", name="uq_model_versions_project_name_version"),
)

model_aliases = Table(
    "model_aliases",
    METADATA,
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("alias", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_by", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("project", "name", "alias", name="pk_model_aliases"),
)

alias_moves = Table(
    "alias_moves",
    METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("alias", Text, nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer, nullable=False),
    Column("moved_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("moved_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
