"""outbox: the relay parks a row it can never send (parked_at, park_reason)

Revision ID: 0004
Revises: 0003
"""

from llmops.migrations import add_outbox_parking, drop_outbox_parking

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_parking()


def downgrade() -> None:
    drop_outbox_parking()
