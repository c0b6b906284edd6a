"""Fixtures for the shared libraries' tests: real Postgres, Kafka and S3 store (started by `make infra-up`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import pytest
from pydantic import Field
from sqlalchemy import BigInteger, Column, DateTime, Identity, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import UUID

from llmops.bus import BUS_METADATA
from llmops.db import Database, create_database, drop_database
from llmops.settings import KafkaSettings
from llmops_schemas import EventPayload

RUN = uuid.uuid4().hex[:8]
TEST_TOPIC = f"llmops.test.{RUN}"


class ThingHappened(EventPayload):
    """A test-only event on a topic of this test run, so runs never see each other's events."""

    event_type: ClassVar[str] = "tests.thing.happened"
    topic: ClassVar[str] = TEST_TOPIC

    sequence: int
    fail: bool = Field(default=False, description="the test handler raises on this event")


EFFECTS_METADATA = MetaData()
effects = Table(
    "effects",
    EFFECTS_METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", UUID(as_uuid=False), nullable=False),  # deliberately not unique: doubles must show
    Column("sequence", BigInteger, nullable=False),
    Column("consumer", Text, nullable=False),
    Column("applied_at", DateTime(timezone=True), server_default=func.now()),
)


@pytest.fixture(scope="session")
def infra_up():
    """Start (or find running) the local infrastructure and this run's test topic."""
    from llmops import infra

    infra.up()
    kafka = KafkaSettings()
    asyncio.run(infra.ensure_topics(kafka.bootstrap_servers, [TEST_TOPIC], 3, 1))
    yield kafka
    asyncio.run(infra.delete_topics(kafka.bootstrap_servers, [TEST_TOPIC, f"{TEST_TOPIC}.dlq"]))


@asynccontextmanager
async def bus_database(name: str) -> AsyncIterator[str]:
    """A throwaway database with the bus tables and an effects table (its URL), dropped afterwards."""
    url = await create_database(name)
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(BUS_METADATA.create_all)
        await conn.run_sync(EFFECTS_METADATA.create_all)
    await db.dispose()
    try:
        yield url
    finally:
        await drop_database(name)


@pytest.fixture(scope="session")
async def database_url(infra_up):
    """The session's bus database: the tests of a worker share it (and its outbox)."""
    async with bus_database(f"llmops_test_{RUN}") as url:
        yield url


@pytest.fixture
async def own_database_url(infra_up):
    """A bus database of the test's own, for a test that counts every row of a table (the outbox, say)."""
    async with bus_database(f"llmops_test_{RUN}_{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.fixture
async def own_db(own_database_url):
    database = Database(own_database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    yield database
    await database.dispose()
