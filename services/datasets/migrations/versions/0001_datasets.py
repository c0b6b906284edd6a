"""datasets, dataset versions, outbox and inbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from llmops.migrations import create_bus_tables, drop_bus_tables, grant_runtime_role

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("project", "name", name="uq_datasets_project_name"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("dataset_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("row_hashes_sha256", sa.Text(), nullable=False),
        sa.Column("stats", postgresql.JSONB(), nullable=False),
        sa.Column("splits", postgresql.JSONB(), nullable=False),
        sa.Column("cleaning", postgresql.JSONB(), nullable=False),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("invalid_rows_dropped", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", postgresql.JSONB(), server_default="[]", nullable=False),
        sa.Column("parent_version_id", postgresql.UUID(as_uuid=False), nullable=True),
        sa.Column("diff", postgresql.JSONB(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("deprecated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deprecated_by", sa.Text(), nullable=True),
        sa.Column("deprecation_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_versions_dataset_id_datasets")),
        sa.ForeignKeyConstraint(
            ["parent_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_dataset_versions_parent_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_id_version"),
        sa.UniqueConstraint("dataset_id", "sha256", name="uq_dataset_versions_dataset_id_sha256"),
    )
    create_bus_tables()
    # Versions are immutable: the runtime role may insert them and record deprecation, nothing else.
    grant_runtime_role(
        {
            "datasets": "SELECT, INSERT",
            "dataset_versions": "SELECT, INSERT, UPDATE (deprecated_at, deprecated_by, deprecation_reason)",
        }
    )


def downgrade() -> None:
    drop_bus_tables()
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
