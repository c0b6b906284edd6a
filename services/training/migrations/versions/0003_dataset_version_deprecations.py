"""dataset_version_deprecations: tombstones of deprecations, kept even when they arrive before their version

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from llmops.migrations import grant_runtime_role

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_version_deprecations",
        sa.Column("version_id", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("deprecated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_dataset_version_deprecations")),
    )
    # Versions already deprecated keep their reason as a tombstone (a re-announced version must stay deprecated).
    op.execute(
        "INSERT INTO dataset_version_deprecations (version_id, reason, deprecated_at, event_id) "
        "SELECT version_id, coalesce(deprecated_reason, ''), now(), '' FROM dataset_versions WHERE deprecated"
    )
    grant_runtime_role({"dataset_version_deprecations": "SELECT, INSERT, UPDATE"})


def downgrade() -> None:
    op.drop_table("dataset_version_deprecations")
