"""projections that hold whatever order their events arrive in: a deployment's status may come before its request
(deployments.name and .requested_at become nullable), and a gate's decision and its override keep the latest by
event time (gate_passes.passed)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("deployments", "name", nullable=True)
    op.alter_column("deployments", "requested_at", nullable=True)
    op.add_column("gate_passes", sa.Column("passed", sa.Boolean(), server_default="true", nullable=False))


def downgrade() -> None:
    op.execute("DELETE FROM gate_passes WHERE NOT passed")
    op.drop_column("gate_passes", "passed")
    op.execute("DELETE FROM deployments WHERE name IS NULL OR requested_at IS NULL")
    op.alter_column("deployments", "requested_at", nullable=False)
    op.alter_column("deployments", "name", nullable=False)
