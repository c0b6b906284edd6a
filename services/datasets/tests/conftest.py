"""Fixtures of the datasets service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial

import httpx
import pytest

from llmops import testing
from llmops.auth import Role
from llmops.testing import service_database
from llmops_datasets.app import DatasetsService, migrate
from llmops_datasets.parallel import IngestPool
from llmops_datasets.settings import DatasetsSettings


@pytest.fixture
async def datasets_settings(infra_up):
    async with (
        service_database(
            "datasets",
            DatasetsSettings,
            max_upload_bytes=2 * 1024 * 1024,
            outbox_poll_interval=0.05,
            ingest_workers=0,  # uploads cleaned in a thread: tests that want the workers use ``ingest_pool``
            # The import consumer of this test only, past the shared topic's history (the import tests position it).
            consumer_group=f"datasets-test-{uuid.uuid4().hex[:12]}",
            consumer_offset_reset="latest",
        ) as settings
    ):
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def datasets(datasets_settings):
    service = DatasetsService(datasets_settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture(scope="session")
def ingest_pool():
    """Ingest workers shared by the tests that clean uploads in worker processes (starting them costs seconds)."""
    with IngestPool(2) as pool:
        yield pool


@pytest.fixture
async def client(datasets):
    transport = httpx.ASGITransport(app=datasets.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as http:
        yield http


#: The tests' tokens: one role each, in project p1, for "dana" unless they name another subject.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")


STEWARD = bearer(Role.DATA_STEWARD)
ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
