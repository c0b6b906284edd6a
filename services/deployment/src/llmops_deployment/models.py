"""The deployment service's tables: projections of model and evaluation events (what may be deployed, and the gates
that allow it), deployments and their replicas (held by serving workers under leases), routes with their history,
API keys (hashed), budgets with their usage and reservations, and the inference records lineage answers from."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

#: ``model.version.registered``: what may be deployed, with its artifact, base model and whole lineage.
model_versions = Table(
    "model_versions",
    METADATA,
    Column("model_version_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", Text, nullable=False),  # adapter | full
    Column("manifest_sha256", Text, nullable=False),
    Column("merged_manifest_sha256", Text),
    Column("base_model", JSONB, nullable=False),  # BaseModelRef
    Column("lineage", JSONB, nullable=False),
    Column("job_id", Text, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("project", "name", "version", name="uq_model_versions_project_name_version"),
)

#: ``model.alias.moved``: a deployment may name an alias. ``event_time`` keeps the latest of out-of-order moves.
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

#: ``evaluation.suite.created``, the newest version of each suite: the model names it is attached to (their
#: versions need a passed gate of this suite to be deployed).
suites = Table(
    "suites",
    METADATA,
    Column("suite_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("version_id", Text, nullable=False),
    Column("models", JSONB, nullable=False),  # list of model names
)

#: ``evaluation.gate.decided`` for model versions.
gate_decisions = Table(
    "gate_decisions",
    METADATA,
    Column("decision_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("model_version_id", Text, nullable=False),
    Column("suite_id", Text, nullable=False),
    Column("suite_name", Text, nullable=False),
    Column("suite_version", Integer, nullable=False),
    Column("suite_version_id", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("rules", JSONB, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_gate_decisions_model_version_id", "model_version_id"),
)

#: ``evaluation.gate.overridden``: another outcome an admin recorded for a decision (the newest one counts).
gate_overrides = Table(
    "gate_overrides",
    METADATA,
    Column("override_id", Text, primary_key=True),
    Column("decision_id", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("model_version_id", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("overridden_at", DateTime(timezone=True), nullable=False),
    Index("ix_gate_overrides_decision_id", "decision_id"),
)

# --- deployments -----------------------------------------------------------------------------------------------------

#: ``status``: requested, ready (some replica serves), failed, stopping, stopped. ``model`` is the ServedModel of
#: the request (None for external), ``external`` its ExternalEndpoint, ``gates`` the GateChecks that allowed it.
deployments = Table(
    "deployments",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("backend", Text, nullable=False),
    Column("pool", Text, nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("model_name", Text),
    Column("model_version", Integer),
    Column("model_version_id", Text),
    Column("model", JSONB),
    Column("external", JSONB),
    Column("generation", JSONB, nullable=False, server_default="{}"),
    Column("gates", JSONB, nullable=False, server_default="[]"),
    Column("gate_override", Boolean, nullable=False, server_default="false"),
    Column("override_reason", Text),
    Column("status", Text, nullable=False),
    Column("last_error", Text),
    Column("requested_by", Text, nullable=False),
    #: The request's correlation id: the serving workers' events carry it, so a deployment's trail reads as one.
    Column("correlation_id", Text),
    #: The trace context of the request that made it: the serving worker's reports continue that trace.
    Column("traceparent", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("stopped_at", DateTime(timezone=True)),
    Index("ix_deployments_project_created_at", "project", "created_at"),
)

#: One row per replica, created with the deployment. A serving worker claims a replica (``worker``, ``lease_until``)
#: and renews the lease while its backend runs; an expired lease lets another worker of the pool take it over.
#: ``status``: pending, starting, ready, restarting, failed, stopping, stopped. ``endpoint`` is the backend's
#: OpenAI-compatible base URL, ``served_model`` the model name it is asked for.
deployment_replicas = Table(
    "deployment_replicas",
    METADATA,
    Column("deployment_id", UUID(as_uuid=False), ForeignKey("deployments.id"), nullable=False),
    Column("replica", Integer, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("worker", Text),
    Column("lease_until", DateTime(timezone=True)),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("restarts", Integer, nullable=False, server_default="0"),
    Column("endpoint", Text),
    Column("served_model", Text),
    Column("model_hash", Text),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("deployment_id", "replica", name="pk_deployment_replicas"),
)

#: A replica's backend log lines (the newest ``log_lines`` per replica are kept).
deployment_logs = Table(
    "deployment_logs",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("deployment_id", UUID(as_uuid=False), nullable=False),
    Column("replica", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("line", Text, nullable=False),
    Index("ix_deployment_logs_deployment_id_id", "deployment_id", "id"),
)

# --- routes ----------------------------------------------------------------------------------------------------------

#: A route is the ``model`` name applications ask the gateway for. ``targets`` [{deployment_id, weight}],
#: ``shadows`` and ``fallbacks`` [deployment_id]. ``version`` grows with each change; the gateway compares it on
#: every request, so a change applies to the next one.
routes = Table(
    "routes",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("targets", JSONB, nullable=False),
    Column("shadows", JSONB, nullable=False, server_default="[]"),
    Column("fallbacks", JSONB, nullable=False, server_default="[]"),
    Column("sticky", Boolean, nullable=False, server_default="false"),
    Column("updated_by", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", name="uq_routes_project_name"),
)

#: Every version of every route (a rollback restores one of them as a new version).
route_versions = Table(
    "route_versions",
    METADATA,
    Column("route_id", UUID(as_uuid=False), ForeignKey("routes.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("change", Text, nullable=False),  # set | split | shadow | rollback
    Column("targets", JSONB, nullable=False),
    Column("shadows", JSONB, nullable=False),
    Column("fallbacks", JSONB, nullable=False),
    Column("sticky", Boolean, nullable=False),
    Column("restored_version", Integer),
    Column("reason", Text, nullable=False, server_default=""),
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("route_id", "version", name="pk_route_versions"),
)

# --- API keys, limits, budgets ---------------------------------------------------------------------------------------

#: Keys for applications: ``key_hash`` is the sha256 of the whole key (shown once at creation); ``prefix`` its first
#: characters, to recognise it in lists. Limits of ``None`` fall back to the project's, then to the settings'.
api_keys = Table(
    "api_keys",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("requests_per_minute", Integer),
    Column("tokens_per_minute", Integer),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", Text),
    Index("ix_api_keys_project", "project"),
)

#: Requests and tokens per minute for a whole project (all its keys and users together).
project_limits = Table(
    "project_limits",
    METADATA,
    Column("project", Text, primary_key=True),
    Column("requests_per_minute", Integer),
    Column("tokens_per_minute", Integer),
    Column("updated_by", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: A token and/or cost budget over a period (day, month, or the whole time) for a project, a user or a key.
budgets = Table(
    "budgets",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("scope", Text, nullable=False),  # project | user | key
    Column("subject", Text, nullable=False),
    Column("period", Text, nullable=False),  # day | month | total
    Column("max_tokens", BigInteger),
    Column("max_cost", Float),
    Column("updated_by", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "scope", "subject", "period", name="uq_budgets_project_scope_subject_period"),
)

#: What a budget has used and holds reserved in one window of its period (``window_start``; epoch for total).
#: A request reserves its most tokens (and their cost) before the call, in one statement that refuses it when any of
#: its budgets would pass its limit, and settles the real usage after; so concurrent requests on any number of
#: gateway replicas overspend by at most what is reserved in flight.
budget_usage = Table(
    "budget_usage",
    METADATA,
    Column("budget_id", UUID(as_uuid=False), ForeignKey("budgets.id", ondelete="CASCADE"), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("used_tokens", BigInteger, nullable=False, server_default="0"),
    Column("used_cost", Float, nullable=False, server_default="0"),
    Column("reserved_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reserved_cost", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("budget_id", "window_start", name="pk_budget_usage"),
)

#: Reservations not yet settled: ``usage`` lists the (budget_id, window_start) rows it holds, so a reservation its
#: gateway never settled (a crashed replica) is released after ``expires_at``.
budget_reservations = Table(
    "budget_reservations",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("usage", JSONB, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_budget_reservations_expires_at", "expires_at"),
)

# --- inference records (the service's own ``inference.completed``/``failed``): what lineage answers from ----------

inferences = Table(
    "inferences",
    METADATA,
    Column("request_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("route", Text, nullable=False),
    Column("status", Text, nullable=False),  # completed | failed
    Column("shadow", Boolean, nullable=False, server_default="false"),
    Column("deployment_id", Text),
    Column("model_version_id", Text),
    Column("model_hash", Text),
    Column("prompt_version_id", Text),
    Column("user", Text),
    Column("key_id", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("event_id", Text, nullable=False),
)
