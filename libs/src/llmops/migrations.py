"""Alembic operations every service's migrations share: the bus tables and the runtime role's grants."""

from __future__ import annotations

from alembic import op

from llmops.bus.migrations import add_outbox_parking, create_bus_tables, drop_bus_tables, drop_outbox_parking

#: What a runtime role needs on the shared tables: the relay marks outbox rows sent and purges them.
BUS_GRANTS = {"outbox": "SELECT, INSERT, UPDATE, DELETE", "inbox": "SELECT, INSERT"}


def grant_runtime_role(grants: dict[str, str]) -> None:
    """Grant ``{table: privileges}`` (plus the bus tables' and sequence usage) to the runtime role
    ``<migrating role>_app`` that `llmops infra up` creates; skipped where that role does not exist."""
    statements = [
        f"EXECUTE format('GRANT {privileges} ON {table} TO %I', app);"
        for table, privileges in (grants | BUS_GRANTS).items()
    ]
    statements.append("EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', app);")
    body = "\n                ".join(statements)
    op.execute(
        f"""
        DO $$
        DECLARE app text := current_user || '_app';
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app) THEN
                {body}
            END IF;
        END $$
        """
    )


__all__ = [
    "BUS_GRANTS",
    "add_outbox_parking",
    "create_bus_tables",
    "drop_bus_tables",
    "drop_outbox_parking",
    "grant_runtime_role",
]
