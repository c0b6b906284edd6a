"""Delivery under outages, end to end: 10,000 events flow into the audit service and the training service's
projection while Postgres is stopped for 30 s, or while the Kafka broker is restarted under the outbox relay and the
consumers. Each test runs on a private Postgres and a private Kafka of its own (``llmops.infra.private``): the shared
infrastructure and the other tests never see the outage, and the 10,000 events never land on the shared topics
(which other tests read from their start). Nothing may be lost, doubled or dead-lettered."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from contextlib import AsyncExitStack

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from llmops.bus import OutboxRelay, add_to_outbox, make_broker, make_producer
from llmops.bus.dead_letters import DeadLetterReader
from llmops.db import Database
from llmops.infra.private import private_kafka, private_postgres
from llmops.settings import KafkaSettings
from llmops.testing import caught_up, service_database
from llmops_audit import service as audit_service
from llmops_audit.app import AuditService
from llmops_audit.app import migrate as migrate_audit
from llmops_audit.settings import AuditSettings
from llmops_schemas import new_event, topics
from llmops_schemas.events import DatasetVersionCreated
from llmops_training.app import migrate as migrate_training
from llmops_training.consumers import projections_consumer
from llmops_training.settings import TrainingSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TOTAL = 10_000
OUTAGE_SECONDS = 30


def dataset_events(run: str, count: int):
    """``count`` dataset.version.created events of this run, over 100 datasets."""
    events = []
    for i in range(count):
        dataset = f"ds-{run}-{i % 100}"
        payload = DatasetVersionCreated(
            dataset_id=dataset,
            version_id=str(uuid.uuid4()),
            version=i // 100 + 1,
            project="faults",
            name=dataset,
            format="chat",
            uri=f"s3://llmops/datasets/{i}",
            sha256=hashlib.sha256(str(i).encode()).hexdigest(),
            size_bytes=10,
            row_count=1,
            stats={},
            splits={},
            cleaning={},
        )
        events.append(new_event(payload, subject=dataset, source="/tests/faults", actor="faults", project="faults"))
    return events


async def wait_for(predicate, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Platform:
    """The audit service and the training projection, on the given Postgres and Kafka, each with its own group."""

    def __init__(self, stack: AsyncExitStack, run: str, kafka: KafkaSettings, postgres=None) -> None:
        self.stack, self.run, self.kafka, self.postgres = stack, run, kafka, postgres

    async def start(self, audit_topics: list[str], projection_offset_reset: str) -> None:
        audit_settings = await self.stack.enter_async_context(
            service_database(
                "audit",
                AuditSettings,
                postgres=self.postgres,
                kafka=self.kafka,
                topics=audit_topics,
                consumer_group=f"audit-faults-{self.run}",
                checkpoint_interval_seconds=3600,
                consumer_backoff_seconds=0.05,
            )
        )
        training_settings = await self.stack.enter_async_context(
            service_database(
                "training",
                TrainingSettings,
                postgres=self.postgres,
                kafka=self.kafka,
                consumer_group=f"training-faults-{self.run}",
                consumer_offset_reset=projection_offset_reset,
                consumer_backoff_seconds=0.05,
            )
        )
        await asyncio.to_thread(migrate_audit, audit_settings)
        await asyncio.to_thread(migrate_training, training_settings)
        self.audit = AuditService(audit_settings)
        await self.audit.start()
        self.stack.push_async_callback(self.audit.stop)
        self.training_db = Database(training_settings.db_url)
        self.stack.push_async_callback(self.training_db.dispose)
        broker = make_broker(self.kafka, client_id=f"projection-{self.run}")
        self.projection = projections_consumer(training_settings, self.training_db, broker)
        await broker.start()
        self.stack.push_async_callback(broker.stop)
        self.groups = {self.audit.consumer.group_id: audit_topics, self.projection.group_id: [topics.DATASETS]}

    async def audited(self, events) -> tuple[int, int]:
        """(entries, distinct event ids) of ``events`` in the audit log."""
        ids = [e.id for e in events]
        async with self.audit.runtime.db.sessions() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT count(*), count(DISTINCT event_id) FROM audit_log "
                        "WHERE event_id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": ids},
                )
            ).one()
        return row[0], row[1]

    async def projected(self, events) -> int:
        ids = [e.data["version_id"] for e in events]
        async with self.training_db.sessions() as session:
            return await session.scalar(
                text("SELECT count(*) FROM dataset_versions WHERE version_id = ANY(CAST(:ids AS text[]))"), {"ids": ids}
            )

    async def everything_arrived(self, events) -> None:
        async def arrived() -> bool:
            try:
                return (await self.audited(events))[0] >= len(events) and await self.projected(events) >= len(events)
            except Exception:  # the database may still be coming back
                return False

        await wait_for(arrived, within=240, what=f"{len(events)} events in the audit log and the projection")
        for group, group_topics in self.groups.items():
            await caught_up(group, group_topics, within=120, kafka=self.kafka)

    async def assert_exactly_once(self, events) -> None:
        assert await self.audited(events) == (len(events), len(events))
        assert await self.projected(events) == len(events)
        report = await audit_service.verify(self.audit.runtime.db, self.audit.signer.public_key)
        assert report.ok, report.as_dict()
        dead = await dead_letters(self.kafka, set(self.groups))
        assert dead == [], f"{len(dead)} records were dead-lettered, e.g. {dead[:3]}"
        readiness = await self.audit.runtime.readiness()
        assert all(v == "ok" for v in readiness.values()), readiness
        assert self.projection.readiness() == "ok"


async def publish(kafka: KafkaSettings, topic_names: list[str], events) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for event in events:
            for topic in topic_names:
                await producer.send(topic, event.to_bytes(), key=event.subject.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def dead_letters(kafka: KafkaSettings, consumers: set[str]) -> list[dict]:
    """The dead-letter records of ``consumers`` (their headers), read to the topic's end."""
    async with DeadLetterReader(kafka, client_id="tests-faults-dlq") as reader:
        return [letter.headers async for letter in reader.scan() if letter.consumer in consumers]


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:8]


async def test_postgres_stopped_for_30_seconds_loses_nothing_and_doubles_nothing(infra_up, tmp_path, run):
    postgres_part, postgres = private_postgres(tmp_path / "postgres", ["audit", "training"])
    kafka_part, kafka = private_kafka(tmp_path / "kafka", topics.ALL_TOPICS)  # no event reaches the shared topics
    await asyncio.gather(asyncio.to_thread(postgres_part.start), asyncio.to_thread(kafka_part.start))
    events = dataset_events(run, TOTAL)
    try:
        async with AsyncExitStack() as stack:
            platform = Platform(stack, run, kafka, postgres)
            await platform.start([topics.DATASETS], projection_offset_reset="earliest")

            await publish(kafka, [topics.DATASETS], events[:3000])
            await asyncio.to_thread(postgres_part.stop)
            stopped = time.monotonic()
            await publish(kafka, [topics.DATASETS], events[3000:7000])

            async def paused() -> bool:
                return platform.audit.consumer.readiness() != "ok" and platform.projection.readiness() != "ok"

            await wait_for(paused, within=OUTAGE_SECONDS - 5, what="both consumers to report the outage")
            readiness = await platform.audit.runtime.readiness()
            assert readiness["postgres"] != "ok" and readiness[f"consumer:{platform.audit.consumer.name}"] != "ok"
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))  # the outage itself
            await asyncio.to_thread(postgres_part.start)
            await publish(kafka, [topics.DATASETS], events[7000:])

            await platform.everything_arrived(events)
            await platform.assert_exactly_once(events)
    finally:
        await asyncio.gather(asyncio.to_thread(postgres_part.close), asyncio.to_thread(kafka_part.close))


async def test_kafka_restarted_under_the_relay_and_the_consumers_loses_nothing_and_doubles_nothing(
    infra_up, tmp_path, run
):
    kafka_part, kafka = private_kafka(tmp_path / "kafka", topics.ALL_TOPICS)
    await asyncio.to_thread(kafka_part.start)
    events = dataset_events(run, TOTAL)
    try:
        async with AsyncExitStack() as stack:
            platform = Platform(stack, run, kafka)
            await platform.start([topics.DATASETS], projection_offset_reset="earliest")
            # The producer side: the events wait in an outbox (the projection's database holds one) for a relay.
            async with platform.training_db.transaction() as session:
                for start in range(0, TOTAL, 1000):
                    await add_to_outbox(session, *events[start : start + 1000])
            producer = make_producer(kafka, client_id=f"relay-{run}")
            await producer.start()
            stack.push_async_callback(producer.stop)
            relay = OutboxRelay(platform.training_db, producer, batch_size=200, poll_interval=0.05)
            relaying = asyncio.create_task(relay.run())
            stack.push_async_callback(lambda: _stopped(relay, relaying))

            async def partly_published() -> bool:
                return await _published(platform.training_db) >= 3000

            await wait_for(partly_published, within=120, what="the relay to publish 3,000 events")
            await asyncio.to_thread(kafka_part.stop)
            await asyncio.to_thread(kafka_part.start)

            async def all_published() -> bool:
                return await _published(platform.training_db) == TOTAL

            await wait_for(all_published, within=240, what="the relay to publish every event")
            await platform.everything_arrived(events)
            await platform.assert_exactly_once(events)
    finally:
        await asyncio.to_thread(kafka_part.close)


async def _published(db: Database) -> int:
    async with db.sessions() as session:
        return await session.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"))


async def _stopped(relay: OutboxRelay, task: asyncio.Task) -> None:
    relay.stop()
    await task
