"""Every service's migrations create exactly the tables, columns, indexes and constraints its code declares (its own
and the bus tables), and run down again to nothing (no table but alembic's, no function): a model changed without
its migration, or a migration without its model, fails here before a deployed database finds out."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from llmops.bus import BUS_METADATA
from llmops.db import Database, alembic_config
from llmops.testing import service_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SETTINGS = {
    "audit": "AuditSettings",
    "datasets": "DatasetsSettings",
    "prompts": "PromptsSettings",
    "training": "TrainingSettings",
    "evaluation": "EvaluationSettings",
    "deployment": "DeploymentSettings",
    "monitoring": "MonitoringSettings",
}


async def differences(url: str, metadata) -> list:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    finally:
        await db.dispose()


async def left_over(url: str) -> tuple[set[str], set[str]]:
    """The tables and the functions in the database's public schema."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            functions = "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            return names, set((await conn.execute(text(functions))).scalars().all())
    finally:
        await db.dispose()


@pytest.mark.parametrize("service", sorted(SETTINGS))
async def test_the_migrations_match_the_declared_tables_and_run_down_again(infra_up, service):
    app = importlib.import_module(f"llmops_{service}.app")
    models = importlib.import_module(f"llmops_{service}.models")
    settings_class = getattr(importlib.import_module(f"llmops_{service}.settings"), SETTINGS[service])
    async with service_database(service, settings_class) as settings:
        url = settings.migrations_db_url
        await asyncio.to_thread(app.migrate, settings)
        drift = await differences(url, [models.METADATA, BUS_METADATA])
        assert drift == [], f"{service}: the migrations and the declared tables differ: {drift}"
        await asyncio.to_thread(command.downgrade, alembic_config(app.MIGRATIONS, url), "base")
        assert await left_over(url) == ({"alembic_version"}, set())
