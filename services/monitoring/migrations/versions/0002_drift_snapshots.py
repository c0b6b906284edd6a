"""drift reports keep Evidently's snapshot and may compare against the evaluation that gated the model version:
drift_reports.snapshot_key and .reference_run_id; evaluation_runs and gate_passes (projections of evaluation events)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from llmops.migrations import grant_runtime_role

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reports made before keep their stored HTML (html_key); new ones keep the snapshot it is rendered from.
    op.add_column("drift_reports", sa.Column("snapshot_key", sa.Text(), nullable=True))
    op.add_column("drift_reports", sa.Column("reference_run_id", sa.Text(), nullable=True))
    op.create_table(
        "evaluation_runs",
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("model_version_id", sa.Text(), nullable=True),
        sa.Column("suite_version_id", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", sa.Text(), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_evaluation_runs")),
    )
    op.create_table(
        "gate_passes",
        sa.Column("model_version_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_version_id", "run_id", name=op.f("pk_gate_passes")),
    )
    # reports are removed by their retention (drift_report_days)
    grant_runtime_role(
        {
            "evaluation_runs": "SELECT, INSERT",
            "gate_passes": "SELECT, INSERT, UPDATE, DELETE",
            "drift_reports": "SELECT, INSERT, UPDATE, DELETE",
        }
    )


def downgrade() -> None:
    op.drop_table("gate_passes")
    op.drop_table("evaluation_runs")
    op.drop_column("drift_reports", "reference_run_id")
    op.drop_column("drift_reports", "snapshot_key")
