"""audit log, chain head, checkpoints, outbox and inbox; append-only enforcement

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

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("project", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column("causation_id", sa.Text(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_log_event_id")),
    )
    for name, columns in {
        "ix_audit_log_subject_seq": ["subject", "seq"],
        "ix_audit_log_actor_seq": ["actor", "seq"],
        "ix_audit_log_type_seq": ["type", "seq"],
        "ix_audit_log_project_seq": ["project", "seq"],
        "ix_audit_log_correlation_id": ["correlation_id"],
        "ix_audit_log_causation_id": ["causation_id"],
        "ix_audit_log_time": ["time"],
    }.items():
        op.create_index(name, "audit_log", columns)
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_head")),
    )
    op.execute(sa.text("INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, :genesis)").bindparams(genesis=GENESIS))
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    op.create_index("ix_checkpoints_seq", "checkpoints", ["seq"])
    create_bus_tables()

    # Append-only: no UPDATE, DELETE or TRUNCATE on the log or the checkpoints, whoever asks (short of a superuser
    # disabling triggers, which the chain and the signed checkpoints then expose).
    op.execute(
        """
        CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for table in ("audit_log", "checkpoints"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
        )

    # The runtime role (<owner>_app, created by `llmops infra up`) may only insert and read the log.
    grant_runtime_role({"audit_log": "SELECT, INSERT", "checkpoints": "SELECT, INSERT", "chain_head": "SELECT, UPDATE"})


def downgrade() -> None:
    drop_bus_tables()
    for table in ("audit_log", "checkpoints"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.drop_table("checkpoints")
    op.drop_table("chain_head")
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_refuse_change()")
