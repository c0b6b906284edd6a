"""The monitoring service's tables: a projection of deployments (what may be watched, and which model version each
serves), the record store's file manifest, metric buckets (one row per minute or hour and dimensions, with
mergeable sketches), anomaly notices (throttling), drift baselines and reports, alert rules, policies and the actions
they took."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
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

#: ``deployment.requested`` / ``.ready`` / ``.stopped`` / ``.failed``: the deployments records may name. A status
#: that arrives before its request (a replayed dead letter) makes the row: ``name`` and ``requested_at`` come with the
#: request.
deployments = Table(
    "deployments",
    METADATA,
    Column("deployment_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text),
    Column("model_version_id", Text),
    Column("model_name", Text),
    Column("model_version", Integer),
    Column("status", Text, nullable=False),  # requested | ready | failed | stopped
    Column("requested_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: ``budget.set``: the token and cost budgets of projects, users and keys (alerts fire at a share of them).
budgets = Table(
    "budgets",
    METADATA,
    Column("budget_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("scope", Text, nullable=False),  # project | user | key
    Column("subject", Text, nullable=False),
    Column("period", Text, nullable=False),  # day | month | total
    Column("max_tokens", BigInteger),
    Column("max_cost", Float),
    Column("state", Text, nullable=False, server_default="ok"),  # ok | firing (the budget alert)
    Column("set_at", DateTime(timezone=True), nullable=False),
)

# --- the record store ----------------------------------------------------------------------------------------------

#: One Parquet file of records, written under a staging key first (``_staging/...``: readers of the hive layout skip
#: names that start with ``_``), registered here in the consumer's transaction, then copied to its final key
#: (``published``). A file registered but not yet published is published again at start (idempotent copy).
record_files = Table(
    "record_files",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("key", Text, nullable=False, unique=True),
    Column("staging_key", Text, nullable=False),
    Column("date", Text, nullable=False),  # YYYY-MM-DD (UTC), the partition
    Column("deployment", Text, nullable=False),  # the deployment id, or records.NO_DEPLOYMENT
    Column("rows", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("min_time", DateTime(timezone=True), nullable=False),
    Column("max_time", DateTime(timezone=True), nullable=False),
    Column("published", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_record_files_date_deployment", "date", "deployment"),
    Index("ix_record_files_unpublished", "published", postgresql_where="NOT published"),
)

# --- metrics -------------------------------------------------------------------------------------------------------

#: Metric buckets: one row per resolution (minute | hour), start and dimensions ("" for none). Sketch columns hold
#: ``llmops_monitoring.sketches`` JSON; counts are merged by addition, sketches by merging.
metric_buckets = Table(
    "metric_buckets",
    METADATA,
    Column("resolution", Text, nullable=False),
    Column("start", DateTime(timezone=True), nullable=False),
    Column("project", Text, nullable=False),
    Column("route", Text, nullable=False),
    Column("deployment_id", Text, nullable=False),
    Column("model_version_id", Text, nullable=False),
    Column("user", Text, nullable=False),
    Column("data", JSONB, nullable=False),  # metrics.Bucket.to_row()
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("resolution", "start", "project", "route", "deployment_id", "model_version_id", "user"),
    Index("ix_metric_buckets_project_start", "project", "resolution", "start"),
    Index("ix_metric_buckets_deployment_start", "deployment_id", "resolution", "start"),
)

#: Where each recent request was counted (its dimensions), so that feedback on it (``feedback.submitted`` with
#: ``inference_id``) lands in the same metrics; kept as long as the minute buckets.
request_index = Table(
    "request_index",
    METADATA,
    Column("request_id", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("route", Text, nullable=False),
    Column("deployment_id", Text, nullable=False),
    Column("model_version_id", Text, nullable=False),
    Column("user", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("project", "request_id"),
    Index("ix_request_index_time", "time"),
)

# --- unusual outputs -----------------------------------------------------------------------------------------------

#: Flagged records counted per project, deployment, kind and window; the window's completed records under kind "",
#: whose ``notified`` says the window was assessed.
anomaly_counts = Table(
    "anomaly_counts",
    METADATA,
    Column("project", Text, nullable=False),
    Column("deployment_id", Text, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("examples", JSONB, nullable=False, server_default="[]"),
    Column("notified", Boolean, nullable=False, server_default="false"),
    PrimaryKeyConstraint("project", "deployment_id", "window_start", "kind"),
    Index("ix_anomaly_counts_open", "window_start", postgresql_where="NOT notified AND kind = ''"),
)

#: The last notice per deployment and kind: a kind is not announced again within the throttle period.
anomaly_notices = Table(
    "anomaly_notices",
    METADATA,
    Column("deployment_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("last_window_start", DateTime(timezone=True), nullable=False),
    Column("last_sent_at", DateTime(timezone=True), nullable=False),
    Column("event_id", UUID(as_uuid=False), nullable=False),
    PrimaryKeyConstraint("project", "deployment_id", "kind"),
)

# --- drift ---------------------------------------------------------------------------------------------------------

#: A deployment's pinned reference window (else the window before the current one's, see the settings).
drift_baselines = Table(
    "drift_baselines",
    METADATA,
    Column("deployment_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("start", DateTime(timezone=True), nullable=False),
    Column("end", DateTime(timezone=True), nullable=False),
    Column("pinned_by", Text, nullable=False),
    Column("pinned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: Evaluation runs that completed (``evaluation.run.completed``): what each evaluated and where its examples are.
evaluation_runs = Table(
    "evaluation_runs",
    METADATA,
    Column("run_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("model_version_id", Text),
    Column("suite_version_id", Text, nullable=False),
    Column("artifact_sha256", Text, nullable=False),  # the examples (JSONL), by content address
    Column("examples", Integer, nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=False),
)

#: Feedback on a request the request index does not hold yet (``feedback.submitted`` and the record travel on
#: different topics, read by different consumers): counted once the record is ingested, or after
#: ``feedback_wait_seconds`` under the model version it names.
pending_feedback = Table(
    "pending_feedback",
    METADATA,
    Column("event_id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("rating", Integer, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),  # the feedback's, its buckets' time
    Column("model_version_id", Text),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_pending_feedback_request", "project", "request_id"),
)

#: The latest gate decision (or admin's override) by event time about each run of a model version; the passed ones
#: are drift references.
gate_passes = Table(
    "gate_passes",
    METADATA,
    Column("model_version_id", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("passed", Boolean, nullable=False, server_default="true"),
    PrimaryKeyConstraint("model_version_id", "run_id"),
)

drift_reports = Table(
    "drift_reports",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("deployment_id", Text, nullable=False),
    Column("model_version_id", Text),
    Column("trigger", Text, nullable=False),  # schedule | request
    Column("reference", Text, nullable=False),  # window | evaluation_dataset
    Column("reference_start", DateTime(timezone=True)),
    Column("reference_end", DateTime(timezone=True)),
    Column("current_start", DateTime(timezone=True), nullable=False),
    Column("current_end", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),  # done | skipped | failed
    Column("reason", Text),  # why skipped or failed
    Column("reference_rows", Integer),
    Column("current_rows", Integer),
    Column("drifted_share", Float),
    Column("threshold", Float),
    Column("drifted", Boolean),
    Column("detected", Boolean, nullable=False, server_default="false"),  # published monitoring.drift.detected
    Column("columns", JSONB),
    Column("json_key", Text),
    Column("json_sha256", Text),
    Column("html_key", Text),  # reports made before 0002: their stored HTML
    Column("snapshot_key", Text),  # Evidently's snapshot (gzip), the HTML rendered from it when opened
    Column("reference_run_id", Text),  # reference evaluation_dataset: the evaluation run that gated the version
    Column("requested_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_drift_reports_deployment_created_at", "deployment_id", "created_at"),
    # one scheduled report per deployment and window, however many replicas run the schedule
    Index(
        "uq_drift_reports_window",
        "deployment_id",
        "current_start",
        unique=True,
        postgresql_where="trigger = 'schedule'",
    ),
)

# --- alerts and policies -------------------------------------------------------------------------------------------

alert_rules = Table(
    "alert_rules",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("filters", JSONB, nullable=False, server_default="{}"),
    Column("comparison", Text, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("window_seconds", Integer, nullable=False),
    Column("for_seconds", Integer, nullable=False),
    Column("state", Text, nullable=False, server_default="ok"),  # ok | pending | firing
    Column("pending_since", DateTime(timezone=True)),
    Column("last_value", Float),
    Column("last_evaluated_at", DateTime(timezone=True)),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", name="uq_alert_rules_project_name"),
)

policies = Table(
    "policies",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("deployment_id", Text),
    Column("model_name", Text),
    Column("on", Text, nullable=False),  # drift | alert | anomaly
    Column("action", Text, nullable=False),  # evaluate | retrain | notify
    Column("suite_id", Text),
    Column("dataset_id", Text),
    Column("cool_down_seconds", Integer, nullable=False),
    Column("last_triggered_at", DateTime(timezone=True)),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("project", "name", name="uq_policies_project_name"),
)

#: Drift, alert and anomaly events of a deployment whose request the deployments projection does not hold yet
#: (``deployment.requested`` late, e.g. dead-lettered and replayed): applied to the policies when it comes.
waiting_causes = Table(
    "waiting_causes",
    METADATA,
    Column("event_id", Text, primary_key=True),
    Column("deployment_id", Text, nullable=False),
    Column("event", JSONB, nullable=False),  # the cause's envelope (CloudEvent.to_json_dict)
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_waiting_causes_deployment", "deployment_id"),
)

#: What each policy did and why: one row per (policy, cause), so a redelivered cause acts once.
policy_actions = Table(
    "policy_actions",
    METADATA,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("policy_id", UUID(as_uuid=False), nullable=False),
    Column("project", Text, nullable=False),
    Column("cause_event_id", Text, nullable=False),
    Column("cause_type", Text, nullable=False),
    Column("outcome", Text, nullable=False),  # triggered | cooling_down
    Column("event_id", UUID(as_uuid=False)),  # the monitoring.policy.triggered event
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("policy_id", "cause_event_id", name="uq_policy_actions_policy_cause"),
)
