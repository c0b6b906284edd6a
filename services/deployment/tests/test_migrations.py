"""The deployment service's migration creates the budget functions the gateway calls (that it creates exactly the
declared tables and runs down again is checked for every service in ``tests/test_migrations.py``)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from llmops.db import Database

pytestmark = pytest.mark.integration


async def test_the_migration_creates_the_budget_functions(deployment_settings):
    db = Database(deployment_settings.migrations_db_url)
    async with db.engine.connect() as conn:
        functions = set(
            (await conn.execute(text("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")))
            .scalars()
            .all()
        )
    await db.dispose()
    assert {"reserve_budget", "settle_budget", "release_expired_reservations", "budget_window"} <= functions
