"""what arrives before what it is about waits for it: feedback for its request's record (pending_feedback), a drift,
alert or anomaly for its deployment's request (waiting_causes)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from llmops.migrations import grant_runtime_role

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_feedback",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version_id", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_pending_feedback")),
    )
    op.create_index("ix_pending_feedback_request", "pending_feedback", ["project", "request_id"])
    op.create_table(
        "waiting_causes",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("deployment_id", sa.Text(), nullable=False),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_waiting_causes")),
    )
    op.create_index("ix_waiting_causes_deployment", "waiting_causes", ["deployment_id"])
    grant_runtime_role({"pending_feedback": "SELECT, INSERT, DELETE", "waiting_causes": "SELECT, INSERT, DELETE"})


def downgrade() -> None:
    op.drop_table("waiting_causes")
    op.drop_table("pending_feedback")
