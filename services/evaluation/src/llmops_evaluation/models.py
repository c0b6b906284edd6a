"""The evaluation service's tables: projections of dataset, prompt and model events (what a suite or run may name),
suites and their immutable versions, runs with their per-example scores, gate decisions and overrides, feedback."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
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

# --- projections of other services' events -------------------------------------------------------------------------

#: ``dataset.version.created``: what a suite may evaluate on.
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
    Column("row_count", Integer, nullable=False),
    Column("splits", JSONB, nullable=False),
    Column("deprecated", Boolean, nullable=False, server_default="false"),
    Column("deprecated_reason", Text),
    UniqueConstraint("project", "name", "version", name="uq_dataset_versions_project_name_version"),
)

#: Tombstones of ``dataset.version.deprecated``, kept even before their version arrives (any order converges).
dataset_version_deprecations = Table(
    "dataset_version_deprecations",
    METADATA,
    Column("version_id", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("deprecated_at", DateTime(timezone=True), nullable=False),
    Column("event_id", Text, nullable=False),
)

#: ``prompt.version.created``: the prompts a suite renders rows through, and judges' rubrics.
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

#: ``base_model.registered``: base models a run may evaluate (and the base of every model version).
base_models = Table(
    "base_models",
    METADATA,
    Column("base_model_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("manifest_sha256", Text),
    Column("hub_id", Text),
    Column("revision", Text),
    UniqueConstraint("project", "name", name="uq_base_models_project_name"),
)

#: ``model.version.registered``: the versions a run may evaluate, with the base model they need.
model_versions = Table(
    "model_versions",
    METADATA,
    Column("model_version_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", Text, nullable=False),  # adapter | full
    Column("manifest_sha256", Text, nullable=False),
    Column("base_model", JSONB, nullable=False),  # the lineage's base model reference
    Column("registered_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("project", "name", "version", name="uq_model_versions_project_name_version"),
)

#: ``model.alias.moved``: where each alias points (relative gates compare against it). ``event_time`` keeps the
#: latest move when moves arrive out of order.
model_aliases = Table(
    "model_aliases",
    METADATA,
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("alias", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("project", "name", "alias", name="pk_model_aliases"),
)

# --- suites ----------------------------------------------------------------------------------------------------------

suites = Table(
    "suites",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", name="uq_suites_project_name"),
)

#: Immutable: a change to a suite is a new version. ``spec`` is the validated suite (SuiteSpec) with the dataset and
#: prompt versions resolved to their ids; ``models`` the model names it runs on automatically.
suite_versions = Table(
    "suite_versions",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("suite_id", UUID(as_uuid=False), ForeignKey("suites.id"), nullable=False),
    Column("project", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec", JSONB, nullable=False),
    Column("models", JSONB, nullable=False, server_default="[]"),
    Column("triggers", JSONB, nullable=False, server_default="[]"),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("suite_id", "version", name="uq_suite_versions_suite_id_version"),
)

# --- runs ------------------------------------------------------------------------------------------------------------

runs = Table(
    "runs",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("suite_version_id", UUID(as_uuid=False), ForeignKey("suite_versions.id"), nullable=False),
    Column("status", Text, nullable=False),  # queued | running | completed | failed
    Column("pool", Text, nullable=False),
    Column("target", JSONB, nullable=False),  # the Target of the request
    Column("model_name", Text),
    Column("model_version", Integer),
    Column("model_version_id", Text),
    Column("trigger", Text, nullable=False),  # api | the event type that started it
    #: What started it: the triggering event's id (one run per suite version and event) or the request's key.
    Column("trigger_key", Text, nullable=False),
    Column("request", JSONB, nullable=False),  # the evaluation.run.requested payload
    Column("requested_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("worker", Text),
    Column("lease_until", DateTime(timezone=True)),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("examples_total", Integer),
    Column("examples_done", Integer, nullable=False, server_default="0"),
    Column("progress", JSONB),
    Column("metrics", JSONB),  # metric -> MetricSummary
    Column("signatures", JSONB),
    Column("artifact_uri", Text),
    Column("artifact_sha256", Text),
    Column("error", Text),
    UniqueConstraint("suite_version_id", "trigger_key", name="uq_runs_suite_version_id_trigger_key"),
    Index("ix_runs_model", "project", "model_name", "model_version"),
)

#: One row per example of a completed run: written once, in the transaction that completes the run.
run_examples = Table(
    "run_examples",
    METADATA,
    Column("run_id", UUID(as_uuid=False), ForeignKey("runs.id"), nullable=False),
    Column("index", Integer, nullable=False),
    Column("scores", JSONB, nullable=False),  # metric -> value (only the metrics scored without error)
    Column("errors", JSONB),  # scorer -> error message
    Column("unparseable", JSONB),  # scorer -> the judge's raw answer
    Column("latency_ms", Float),
    PrimaryKeyConstraint("run_id", "index", name="pk_run_examples"),
)

gate_decisions = Table(
    "gate_decisions",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("run_id", UUID(as_uuid=False), ForeignKey("runs.id"), nullable=False, unique=True),
    Column("project", Text, nullable=False),
    Column("suite_version_id", UUID(as_uuid=False), ForeignKey("suite_versions.id"), nullable=False),
    Column("model_name", Text),
    Column("model_version", Integer),
    Column("model_version_id", Text),
    Column("passed", Boolean, nullable=False),
    Column("rules", JSONB, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

gate_overrides = Table(
    "gate_overrides",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("decision_id", UUID(as_uuid=False), ForeignKey("gate_decisions.id"), nullable=False, index=True),
    Column("project", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- feedback --------------------------------------------------------------------------------------------------------

#: One row per ``feedback.submitted`` event (its id is the key: an event published twice counts once).
feedback = Table(
    "feedback",
    METADATA,
    Column("id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("rating", Integer),
    Column("thumb", Text),
    Column("correction", Text),
    Column("comment", Text),
    Column("inference_id", Text),
    Column("model_version_id", Text),
    Column("run_id", Text),
    Column("example_index", Integer),
    Column("input", Text),
    Column("output", Text),
    Column("source", Text),
    Column("actor", Text),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_feedback_model_version", "project", "model_version_id"),
)
