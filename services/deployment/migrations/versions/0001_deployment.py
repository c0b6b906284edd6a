"""projections (model versions, aliases, suites, gates), deployments and replicas, routes, API keys, limits, budgets,
inference records, outbox, inbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from llmops.migrations import (
    add_outbox_parking,
    create_bus_tables,
    drop_bus_tables,
    drop_outbox_parking,
    grant_runtime_role,
)

# Budgets are reserved and settled by the gateway in one round trip each: these functions lock a request's budget
# usage rows in budget id order (so concurrent requests never deadlock), refuse when any budget would pass its limit
# (used + reserved + this request > limit: the one place that comparison is made), and otherwise reserve on all.
BUDGET_FUNCTIONS = (
    """
CREATE FUNCTION budget_window(p_period text, p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_period
        WHEN 'day' THEN date_trunc('day', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        WHEN 'month' THEN date_trunc('month', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        ELSE timestamptz '1970-01-01 00:00:00+00'
    END
$$
""",
    """
CREATE FUNCTION reserve_budget(
    p_project text, p_user text, p_key text, p_tokens bigint, p_cost double precision, p_ttl_seconds double precision
) RETURNS TABLE (reservation_id uuid, refused_budget uuid, refused_scope text, refused_subject text,
                 refused_period text, applied integer)
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := now();
    b record;
    u record;
    held jsonb := '[]'::jsonb;
    rid uuid;
BEGIN
    FOR b IN
        SELECT bu.id, bu.scope, bu.subject, bu.period, bu.max_tokens, bu.max_cost,
               budget_window(bu.period, at) AS ws
        FROM budgets bu
        WHERE bu.project = p_project
          AND ((bu.scope = 'project' AND bu.subject = p_project)
               OR (bu.scope = 'user' AND bu.subject = p_user)
               OR (bu.scope = 'key' AND bu.subject = p_key))
        ORDER BY bu.id
    LOOP
        INSERT INTO budget_usage (budget_id, window_start) VALUES (b.id, b.ws) ON CONFLICT DO NOTHING;
        SELECT used_tokens, reserved_tokens, used_cost, reserved_cost INTO STRICT u
        FROM budget_usage WHERE budget_id = b.id AND window_start = b.ws FOR UPDATE;
        IF (b.max_tokens IS NOT NULL AND u.used_tokens + u.reserved_tokens + p_tokens > b.max_tokens)
           OR (b.max_cost IS NOT NULL AND u.used_cost + u.reserved_cost + p_cost > b.max_cost) THEN
            RETURN QUERY SELECT NULL::uuid, b.id, b.scope, b.subject, b.period, 0;
            RETURN;
        END IF;
        held := held || jsonb_build_array(jsonb_build_object('budget_id', b.id, 'window_start', b.ws));
    END LOOP;
    IF jsonb_array_length(held) = 0 THEN
        RETURN QUERY SELECT NULL::uuid, NULL::uuid, NULL::text, NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    UPDATE budget_usage bu
    SET reserved_tokens = bu.reserved_tokens + p_tokens, reserved_cost = bu.reserved_cost + p_cost
    FROM jsonb_to_recordset(held) AS h(budget_id uuid, window_start timestamptz)
    WHERE bu.budget_id = h.budget_id AND bu.window_start = h.window_start;
    rid := gen_random_uuid();
    INSERT INTO budget_reservations (id, usage, tokens, cost, expires_at)
    VALUES (rid, held, p_tokens, p_cost, at + make_interval(secs => p_ttl_seconds));
    RETURN QUERY SELECT rid, NULL::uuid, NULL::text, NULL::text, NULL::text, jsonb_array_length(held);
END
$$
""",
    """
CREATE FUNCTION settle_budget(p_id uuid, p_tokens bigint, p_cost double precision) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    DELETE FROM budget_reservations WHERE id = p_id RETURNING usage, tokens, cost INTO r;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM budget_usage bu
    JOIN jsonb_to_recordset(r.usage) AS h(budget_id uuid, window_start timestamptz)
      ON bu.budget_id = h.budget_id AND bu.window_start = h.window_start
    ORDER BY bu.budget_id FOR UPDATE OF bu;
    UPDATE budget_usage bu
    SET reserved_tokens = greatest(bu.reserved_tokens - r.tokens, 0),
        reserved_cost = greatest(bu.reserved_cost - r.cost, 0),
        used_tokens = bu.used_tokens + p_tokens,
        used_cost = bu.used_cost + p_cost
    FROM jsonb_to_recordset(r.usage) AS h(budget_id uuid, window_start timestamptz)
    WHERE bu.budget_id = h.budget_id AND bu.window_start = h.window_start;
    RETURN true;
END
$$
""",
    """
CREATE FUNCTION release_expired_reservations() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    released integer := 0;
BEGIN
    FOR r IN SELECT id FROM budget_reservations WHERE expires_at < now() ORDER BY id LOOP
        IF settle_budget(r.id, 0, 0) THEN
            released := released + 1;
        END IF;
    END LOOP;
    RETURN released;
END
$$
""",
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index("ix_api_keys_project", "api_keys", ["project"], unique=False)
    op.create_table(
        "budget_reservations",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("usage", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_reservations")),
    )
    op.create_index("ix_budget_reservations_expires_at", "budget_reservations", ["expires_at"], unique=False)
    op.create_table(
        "budgets",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("max_tokens", sa.BigInteger(), nullable=True),
        sa.Column("max_cost", sa.Float(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint("project", "scope", "subject", "period", name="uq_budgets_project_scope_subject_period"),
    )
    op.create_table(
        "deployment_logs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("replica", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_logs")),
    )
    op.create_index("ix_deployment_logs_deployment_id_id", "deployment_logs", ["deployment_id", "id"], unique=False)
    op.create_table(
        "deployments",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("pool", sa.Text(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("model_version_id", sa.Text(), nullable=True),
        sa.Column("model", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("external", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("generation", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("gates", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("gate_override", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index("ix_deployments_project_created_at", "deployments", ["project", "created_at"], unique=False)
    op.create_table(
        "gate_decisions",
        sa.Column("decision_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("model_version_id", sa.Text(), nullable=False),
        sa.Column("suite_id", sa.Text(), nullable=False),
        sa.Column("suite_name", sa.Text(), nullable=False),
        sa.Column("suite_version", sa.Integer(), nullable=False),
        sa.Column("suite_version_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("rules", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", name=op.f("pk_gate_decisions")),
    )
    op.create_index("ix_gate_decisions_model_version_id", "gate_decisions", ["model_version_id"], unique=False)
    op.create_table(
        "gate_overrides",
        sa.Column("override_id", sa.Text(), nullable=False),
        sa.Column("decision_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("model_version_id", sa.Text(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("overridden_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("override_id", name=op.f("pk_gate_overrides")),
    )
    op.create_index("ix_gate_overrides_decision_id", "gate_overrides", ["decision_id"], unique=False)
    op.create_table(
        "inferences",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("shadow", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("deployment_id", sa.Text(), nullable=True),
        sa.Column("model_version_id", sa.Text(), nullable=True),
        sa.Column("model_hash", sa.Text(), nullable=True),
        sa.Column("prompt_version_id", sa.Text(), nullable=True),
        sa.Column("user", sa.Text(), nullable=True),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_inferences")),
    )
    op.create_table(
        "model_aliases",
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project", "name", "alias", name="pk_model_aliases"),
    )
    op.create_table(
        "model_versions",
        sa.Column("model_version_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("manifest_sha256", sa.Text(), nullable=False),
        sa.Column("merged_manifest_sha256", sa.Text(), nullable=True),
        sa.Column("base_model", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("lineage", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_version_id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("project", "name", "version", name="uq_model_versions_project_name_version"),
    )
    op.create_table(
        "project_limits",
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("project", name=op.f("pk_project_limits")),
    )
    op.create_table(
        "routes",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("targets", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("shadows", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("fallbacks", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("sticky", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
        sa.UniqueConstraint("project", "name", name="uq_routes_project_name"),
    )
    op.create_table(
        "suites",
        sa.Column("suite_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Text(), nullable=False),
        sa.Column("models", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("suite_id", name=op.f("pk_suites")),
    )
    op.create_table(
        "budget_usage",
        sa.Column("budget_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("used_cost", sa.Float(), server_default="0", nullable=False),
        sa.Column("reserved_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reserved_cost", sa.Float(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["budget_id"], ["budgets.id"], name=op.f("fk_budget_usage_budget_id_budgets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("budget_id", "window_start", name="pk_budget_usage"),
    )
    op.create_table(
        "deployment_replicas",
        sa.Column("deployment_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("replica", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("restarts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=True),
        sa.Column("served_model", sa.Text(), nullable=True),
        sa.Column("model_hash", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployments.id"], name=op.f("fk_deployment_replicas_deployment_id_deployments")
        ),
        sa.PrimaryKeyConstraint("deployment_id", "replica", name="pk_deployment_replicas"),
    )
    op.create_table(
        "route_versions",
        sa.Column("route_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("targets", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("shadows", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("fallbacks", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("sticky", sa.Boolean(), nullable=False),
        sa.Column("restored_version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["route_id"], ["routes.id"], name=op.f("fk_route_versions_route_id_routes")),
        sa.PrimaryKeyConstraint("route_id", "version", name="pk_route_versions"),
    )
    create_bus_tables()
    add_outbox_parking()
    # ### end Alembic commands ###
    for statement in BUDGET_FUNCTIONS:
        op.execute(statement)
    # Decisions, overrides, route versions and inference records are append-only for the runtime role.
    grant_runtime_role(
        {
            "model_versions": "SELECT, INSERT, UPDATE",
            "model_aliases": "SELECT, INSERT, UPDATE",
            "suites": "SELECT, INSERT, UPDATE",
            "gate_decisions": "SELECT, INSERT",
            "gate_overrides": "SELECT, INSERT",
            "deployments": "SELECT, INSERT, UPDATE",
            "deployment_replicas": "SELECT, INSERT, UPDATE",
            "deployment_logs": "SELECT, INSERT, DELETE",
            "routes": "SELECT, INSERT, UPDATE",
            "route_versions": "SELECT, INSERT",
            "api_keys": "SELECT, INSERT, UPDATE",
            "project_limits": "SELECT, INSERT, UPDATE",
            "budgets": "SELECT, INSERT, UPDATE",
            "budget_usage": "SELECT, INSERT, UPDATE",
            "budget_reservations": "SELECT, INSERT, DELETE",
            "inferences": "SELECT, INSERT",
        }
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION release_expired_reservations()")
    op.execute("DROP FUNCTION settle_budget(uuid, bigint, double precision)")
    op.execute("DROP FUNCTION reserve_budget(text, text, text, bigint, double precision, double precision)")
    op.execute("DROP FUNCTION budget_window(text, timestamptz)")
    # ### commands auto generated by Alembic - please adjust! ###
    drop_outbox_parking()
    drop_bus_tables()
    op.drop_table("route_versions")
    op.drop_table("deployment_replicas")
    op.drop_table("budget_usage")
    op.drop_table("suites")
    op.drop_table("routes")
    op.drop_table("project_limits")
    op.drop_table("model_versions")
    op.drop_table("model_aliases")
    op.drop_table("inferences")
    op.drop_index("ix_gate_overrides_decision_id", table_name="gate_overrides")
    op.drop_table("gate_overrides")
    op.drop_index("ix_gate_decisions_model_version_id", table_name="gate_decisions")
    op.drop_table("gate_decisions")
    op.drop_index("ix_deployments_project_created_at", table_name="deployments")
    op.drop_table("deployments")
    op.drop_index("ix_deployment_logs_deployment_id_id", table_name="deployment_logs")
    op.drop_table("deployment_logs")
    op.drop_table("budgets")
    op.drop_index("ix_budget_reservations_expires_at", table_name="budget_reservations")
    op.drop_table("budget_reservations")
    op.drop_index("ix_api_keys_project", table_name="api_keys")
    op.drop_table("api_keys")
    # ### end Alembic commands ###
