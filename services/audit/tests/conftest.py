"""Fixtures of the audit service's tests: real Kafka and Postgres, a fresh audit database per test that needs one,
migrated as the owner role and used through the runtime role, exactly as deployed."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from llmops.settings import KafkaSettings
from llmops.testing import service_database
from llmops_audit.app import AuditService, migrate
from llmops_audit.settings import AuditSettings
from llmops_schemas import new_event
from llmops_schemas.events import ProbeSent

RUN = uuid.uuid4().hex[:8]
BOOTSTRAP = KafkaSettings().bootstrap_servers


@pytest.fixture
async def topics(infra_up):
    """Three topics of this test alone, standing in for the platform's domain topics."""
    from llmops import infra

    names = [f"llmops.test.{RUN}.{uuid.uuid4().hex[:6]}.{t}" for t in ("datasets", "training", "security")]
    await infra.ensure_topics(BOOTSTRAP, names, 3, 1)
    yield names
    await infra.delete_topics(BOOTSTRAP, names)


@pytest.fixture
async def audit_settings(infra_up, topics):
    """Settings for an audit service on a fresh database owned by the audit owner role, used as the app role."""
    async with service_database(
        "audit",
        AuditSettings,
        topics=topics,
        consumer_group=f"audit-test-{uuid.uuid4().hex[:8]}",
        checkpoint_interval_seconds=3600,
        outbox_poll_interval=0.05,
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def audit(audit_settings):
    """A running audit service (consumer, relay, checkpoint timer; HTTP through its ASGI app)."""
    service = AuditService(audit_settings)
    await service.start()
    yield service
    await service.stop()


def probes(count: int, *, subjects: int = 50, project: str = "p1", start: int = 0):
    """``count`` events over ``subjects`` subjects; ``sequence`` counts each subject's events in order."""
    per_subject: dict[str, int] = {}
    events = []
    for i in range(start, start + count):
        subject = f"thing-{i % subjects}"
        per_subject[subject] = per_subject.get(subject, -1) + 1
        events.append(
            new_event(
                ProbeSent(message=f"event {i}", sequence=per_subject[subject]),
                subject=subject,
                source="/tests/producer",
                actor=f"user-{i % 3}",
                project=project,
            )
        )
    return events


async def publish(topic: str, events) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(topic, e.to_bytes(), key=e.subject.encode()) for e in events]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def head(db) -> int:
    from llmops_audit import repository

    async with db.sessions() as session:
        return (await repository.read_head(session))[0]


async def wait_for_head(db, seq: int, *, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while (current := await head(db)) < seq:
        if time.monotonic() > deadline:
            raise AssertionError(f"the chain head reached {current}, not {seq}")
        await asyncio.sleep(0.2)
