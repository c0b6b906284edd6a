"""dataset_imports: the answer to each import requested by event, by its idempotency key

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from llmops.migrations import grant_runtime_role

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_imports",
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("import_id", sa.Text(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("version_id", postgresql.UUID(as_uuid=False), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"], ["dataset_versions.id"], name=op.f("fk_dataset_imports_version_id_dataset_versions")
        ),
        sa.PrimaryKeyConstraint("project", "import_id", name=op.f("pk_dataset_imports")),
    )
    # An import's answer is written once: the runtime role inserts and reads, nothing else.
    grant_runtime_role({"dataset_imports": "SELECT, INSERT"})


def downgrade() -> None:
    op.drop_table("dataset_imports")
