"""Database helpers on real Postgres: Alembic migrations per service, the edge-owned transaction."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from llmops.bus import BUS_METADATA, add_to_outbox, outbox
from llmops.db import Database, create_database, drop_database, upgrade
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).with_name("migrations_example")


@pytest.fixture
async def empty_database(infra_up):
    name = f"llmops_test_migrations_{uuid.uuid4().hex[:8]}"
    url = await create_database(name)
    yield url
    await drop_database(name)


class TestMigrations:
    async def test_a_service_migration_creates_exactly_the_bus_tables_the_code_uses(self, empty_database):
        await asyncio.to_thread(upgrade, EXAMPLE, empty_database)
        db = Database(empty_database)
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            drift = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), BUS_METADATA))
        await db.dispose()
        assert {"outbox", "inbox", "alembic_version"} == tables
        assert drift == [], f"migration and metadata differ: {drift}"

    async def test_migrations_run_down_again(self, empty_database):
        await asyncio.to_thread(upgrade, EXAMPLE, empty_database)
        from alembic import command

        from llmops.db import alembic_config

        await asyncio.to_thread(command.downgrade, alembic_config(EXAMPLE, empty_database), "base")
        db = Database(empty_database)
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        await db.dispose()
        assert tables == {"alembic_version"}


class TestTransactions:
    async def test_a_successful_block_commits(self, db):
        event = new_event(ProbeSent(message="kept"), subject="tx", source="/tests")
        async with db.transaction() as session:
            await add_to_outbox(session, event)
        assert await _stored(db, event.id) == 1

    async def test_a_failing_block_rolls_back_its_state_and_its_events(self, db):
        event = new_event(ProbeSent(message="dropped"), subject="tx", source="/tests")
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                await add_to_outbox(session, event)
                raise RuntimeError("the use case failed after writing")
        assert await _stored(db, event.id) == 0


async def _stored(db, event_id: str) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).where(outbox.c.event_id == event_id))


class TestOutboxPurge:
    async def test_published_rows_older_than_the_limit_are_purged_and_unpublished_ones_kept(self, db):
        from sqlalchemy import update

        from llmops.bus.outbox import purge_published

        sent, pending = (new_event(ProbeSent(message=m), subject="purge", source="/tests") for m in ("sent", "pending"))
        async with db.transaction() as session:
            await add_to_outbox(session, sent, pending)
            await session.execute(
                update(outbox)
                .where(outbox.c.event_id == sent.id)
                .values(published_at=func.now() - text("interval '2 hours'"))
            )
        assert await purge_published(db, older_than_seconds=3600) >= 1
        assert (await _stored(db, sent.id), await _stored(db, pending.id)) == (0, 1)
