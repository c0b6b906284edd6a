"""Fixtures of the monitoring service's tests: real Postgres, Kafka and S3 store; a fresh database per test,
migrated as the owner role and used through the runtime role; inference records on a topic of the test's own (the
platform's inference topic carries every other test's records too); records published the way another system
would, with a plain Kafka producer."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from llmops import testing
from llmops.auth import Role
from llmops.settings import KafkaSettings
from llmops.testing import service_database
from llmops_monitoring.app import MonitoringService, migrate
from llmops_monitoring.settings import MonitoringSettings

BOOTSTRAP = KafkaSettings().bootstrap_servers
RUN = uuid.uuid4().hex[:8]


@pytest.fixture
async def records_topic(infra_up):
    from llmops import infra

    name = f"llmops.test.{RUN}.{uuid.uuid4().hex[:6]}.inference"
    await infra.ensure_topics(BOOTSTRAP, [name], 3, 1)
    yield name
    await infra.delete_topics(BOOTSTRAP, [name])


@pytest.fixture
async def monitoring_settings(infra_up, records_topic):
    async with service_database(
        "monitoring",
        MonitoringSettings,
        outbox_poll_interval=0.05,
        consumer_group=f"monitoring-test-{uuid.uuid4().hex[:12]}",
        records_group=f"monitoring-records-test-{uuid.uuid4().hex[:12]}",
        records_topics=[records_topic],
        # ingest in the test's process (the worker processes have tests of their own: faults/)
        records_workers=0,
        publish_interval_seconds=0.2,
        # scheduled drift reports are the tests' to run (drift_service.scheduled_pass with a given now)
        drift_interval_seconds=0,
        # retention and the staging sweep too: a pass at start raced a retention test's own call (CI, 2026-12-02)
        maintenance_interval_seconds=0,
        records_prefix=f"test-monitoring/{uuid.uuid4().hex[:12]}/records",
        reports_prefix=f"test-monitoring/{uuid.uuid4().hex[:12]}/drift",
        # the shared deployments topic holds every other test's history: start at its end
        consumer_offset_reset="latest",
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def monitoring(monitoring_settings):
    running = MonitoringService(monitoring_settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(monitoring):
    transport = httpx.ASGITransport(app=monitoring.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as http:
        yield http


async def publish(topic: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    """Publish raw values as another system would: a plain idempotent producer, no platform code."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [
            await producer.send(topic, value, key=(keys[i] if keys else uuid.uuid4().bytes))
            for i, value in enumerate(values)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


#: The tests' tokens: one role each, in project p1.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")
ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
ADMIN = bearer(Role.ADMIN, subject="ada")
VIEWER = bearer(Role.VIEWER, subject="vic")
