"""The deployment service's migration creates exactly the tables its code declares (and the budget functions the
gateway calls), and runs down again."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from llmops.bus import BUS_METADATA
from llmops.db import Database, alembic_config
from llmops_deployment.app import MIGRATIONS
from llmops_deployment.models import METADATA

pytestmark = pytest.mark.integration


async def test_the_migration_matches_the_tables_the_code_declares(deployment_settings):
    db = Database(deployment_settings.migrations_db_url)
    async with db.engine.connect() as conn:
        drift = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), [METADATA, BUS_METADATA]))
        functions = set(
            (await conn.execute(text("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")))
            .scalars()
            .all()
        )
    await db.dispose()
    assert drift == [], f"migration and tables differ: {drift}"
    assert {"reserve_budget", "settle_budget", "release_expired_reservations", "budget_window"} <= functions


async def test_the_migration_runs_down_again(deployment_settings):
    url = deployment_settings.migrations_db_url
    await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, url), "base")
    db = Database(url)
    async with db.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    await db.dispose()
    assert tables == {"alembic_version"}
