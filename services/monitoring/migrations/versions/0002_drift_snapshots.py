"""drift_reports.snapshot_key: a report keeps Evidently's snapshot (compressed) and renders its HTML when opened

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reports made before keep their stored HTML (html_key); new ones keep the snapshot it is rendered from.
    op.add_column("drift_reports", sa.Column("snapshot_key", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("drift_reports", "snapshot_key")
