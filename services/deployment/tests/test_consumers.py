"""The deployment service's consumers on real Kafka: model versions, aliases, suites, gate decisions, overrides and
inference records are projected once each even when delivered twice, a malformed event goes to the dead-letter
topic and the consumer carries on; and on real Postgres, the same events in any order give the same tables."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import select, text

from llmops.bus.dead_letters import DeadLetterReader, Selection
from llmops.settings import KafkaSettings
from llmops_deployment.models import gate_decisions, gate_overrides, inferences, model_aliases, model_versions, suites
from llmops_schemas import topics
from llmops_schemas.events import ModelAliasMoved

from .seed import completed, decided, event_of, overridden, registered, suite_created

pytestmark = pytest.mark.integration
BOOTSTRAP = KafkaSettings().bootstrap_servers


@pytest.fixture
def offset_reset() -> str:
    # Not "earliest": the shared topics hold every earlier run's records (the gateway's benchmark alone publishes
    # thousands), which a new group would read first. The consumers start at the end once they hold their partitions.
    return "latest"


@pytest.fixture
async def joined(deployment):
    """The consumers hold their partitions: a sentinel model version and inference record, published again until
    both are projected (one published before the group's assignment would be skipped by ``latest``)."""
    project = f"sentinel-{uuid.uuid4().hex[:8]}"
    model, record = registered(project), completed(project)
    deadline = time.monotonic() + 90
    while True:
        await publish(topics.MODELS, event_of(model, model.model_version_id))
        await publish(topics.INFERENCE, event_of(record, record.request_id))
        await asyncio.sleep(0.5)
        async with deployment.runtime.db.sessions() as session:
            found = (
                await session.execute(
                    select(model_versions.c.project)
                    .where(model_versions.c.project == project)
                    .union_all(select(inferences.c.project).where(inferences.c.project == project))
                )
            ).all()
        if len(found) == 2:
            return
        assert time.monotonic() < deadline, "the consumers did not join their groups"


async def publish(topic: str, *events) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            value = event if isinstance(event, bytes) else event.to_bytes()
            key = b"bad" if isinstance(event, bytes) else event.subject.encode()
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def eventually(deployment, query, expected, within: float = 60):
    deadline = time.monotonic() + within
    while True:
        async with deployment.runtime.db.sessions() as session:
            found = (await session.execute(query)).all()
        if found == expected:
            return
        assert time.monotonic() < deadline, f"{found} != {expected}"
        await asyncio.sleep(0.2)


def moved(project: str, version: int) -> ModelAliasMoved:
    return ModelAliasMoved(
        project=project, name="tiny-lora", alias="prod", from_version=None, to_version=version, reason=""
    )


@pytest.mark.usefixtures("joined")
class TestProjections:
    async def test_model_and_evaluation_events_are_projected_once_each(self, deployment):
        project = f"proj-{uuid.uuid4().hex[:8]}"
        model = registered(project)
        suite = suite_created(project)
        decision = decided(suite, model, False)
        override = overridden(decision, True)
        now = datetime.now(UTC)
        events = [
            event_of(model, model.model_version_id),
            event_of(moved(project, 2), "tiny-lora", at=now),
            event_of(moved(project, 1), "tiny-lora", at=now - timedelta(minutes=1)),  # older: must not win
            event_of(suite, suite.suite_id),
            event_of(decision, model.model_version_id),
            event_of(override, model.model_version_id),
        ]
        # each event twice: the second copy is a redelivery and must change nothing
        await publish(topics.MODELS, *(e for e in events[:3] for _ in range(2)))
        await publish(topics.EVALUATIONS, *(e for e in events[3:] for _ in range(2)))
        await eventually(
            deployment,
            select(
                model_versions.c.name, model_versions.c.job_id, model_versions.c.base_model["manifest_sha256"]
            ).where(model_versions.c.project == project),
            [("tiny-lora", model.job_id, "b" * 64)],
        )
        await eventually(deployment, select(model_aliases.c.version).where(model_aliases.c.project == project), [(2,)])
        await eventually(
            deployment,
            select(suites.c.name, suites.c.models).where(suites.c.project == project),
            [("quality", ["tiny-lora"])],
        )
        await eventually(
            deployment,
            select(gate_decisions.c.passed, gate_decisions.c.suite_name).where(gate_decisions.c.project == project),
            [(False, "quality")],
        )
        await eventually(
            deployment,
            select(gate_overrides.c.passed, gate_overrides.c.model_version_id).where(
                gate_overrides.c.project == project
            ),
            [(True, model.model_version_id)],
        )

    async def test_inference_records_are_stored_once_each(self, deployment):
        project = f"proj-{uuid.uuid4().hex[:8]}"
        record = completed(project, deployment_id=str(uuid.uuid4()))
        event = event_of(record, record.request_id)
        again = event_of(record, record.request_id)  # the same record republished under another event id
        await publish(topics.INFERENCE, event, event, again)
        await eventually(
            deployment,
            select(inferences.c.request_id, inferences.c.status, inferences.c.event_id).where(
                inferences.c.project == project
            ),
            [(record.request_id, "completed", event.id)],
        )

    async def test_a_malformed_event_goes_to_the_dead_letter_topic_and_the_next_is_projected(self, deployment):
        project = f"proj-{uuid.uuid4().hex[:8]}"
        bad_model = event_of(registered(project, name="bad"), "bad").model_dump(mode="json")
        bad_model["data"]["manifest_sha256"] = "not a hash"
        good = registered(project, name="good")
        await publish(topics.MODELS, orjson.dumps(bad_model), event_of(good, good.model_version_id))
        bad_record = event_of(completed(project), "bad").model_dump(mode="json")
        bad_record["data"]["latency_ms"] = -1
        record = completed(project)
        await publish(topics.INFERENCE, orjson.dumps(bad_record), event_of(record, record.request_id))
        await eventually(
            deployment, select(model_versions.c.name).where(model_versions.c.project == project), [("good",)]
        )
        await eventually(
            deployment, select(inferences.c.request_id).where(inferences.c.project == project), [(record.request_id,)]
        )
        group = deployment.settings.consumer_group
        await dead_lettered(group, bad_model["id"])
        await dead_lettered(f"{group}-inference", bad_record["id"])


async def dead_lettered(consumer: str, event_id: str, within: float = 60) -> None:
    """Wait until the dead-letter topic holds ``event_id`` from ``consumer``, as invalid data."""
    deadline = time.monotonic() + within
    while True:
        async with DeadLetterReader(client_id="tests-deployment-dlq") as reader:
            found = [
                letter.reason
                async for letter in reader.scan(Selection(consumer=consumer))
                if event_id.encode() in letter.value
            ]
        if found:
            assert found == ["invalid_data"]
            return
        assert time.monotonic() < deadline, f"{event_id} was not dead-lettered by {consumer}"
        await asyncio.sleep(0.5)


def as_record(event, offset: int, topic: str = topics.MODELS) -> ConsumerRecord:
    value, key = event.to_bytes(), event.subject.encode()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=[],
    )


def history(project: str) -> list[ConsumerRecord]:
    """Model and evaluation events with what reorders them in practice: alias moves and suite versions out of order,
    decisions and overrides before what they are about, redeliveries and events re-announced under new ids."""
    model = registered(project)
    suite = suite_created(project)
    newer = suite_created(project, version=2, models=("tiny-lora", "other"), suite_id=suite.suite_id)
    decision = decided(suite, model, False)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        event_of(model, "m"),
        event_of(model, "m"),  # re-announced
        event_of(moved(project, 1), "a", at=start),
        event_of(moved(project, 3), "a", at=start + timedelta(minutes=2)),
        event_of(moved(project, 2), "a", at=start + timedelta(minutes=1)),
        event_of(suite, "s"),
        event_of(newer, "s"),
        event_of(decision, "d"),
        event_of(overridden(decision, True), "o"),
    ]
    records = [as_record(event, offset) for offset, event in enumerate(events)]
    return [*records, records[3], records[7]]  # redelivered


class TestProjectionsInAnyOrder:
    async def test_every_order_of_the_same_events_gives_the_same_tables(self, deployment_settings):
        from types import SimpleNamespace

        from llmops.bus import make_broker
        from llmops.db import Database
        from llmops_deployment.consumers import projections_consumer

        # A consumer that is never started: nothing but these records reaches its tables.
        db, owner = Database(deployment_settings.db_url), Database(deployment_settings.migrations_db_url)
        runtime = SimpleNamespace(db=db, broker=make_broker(deployment_settings.kafka))
        consumer = projections_consumer(deployment_settings, runtime)  # type: ignore[arg-type]
        records = history("p1")
        tables = (model_versions, model_aliases, suites, gate_decisions, gate_overrides)
        found = {}
        try:
            for seed in range(20):
                rng = random.Random(seed)
                order = rng.sample(records, len(records)) if seed else records
                async with owner.transaction() as session:
                    await session.execute(text(f"TRUNCATE inbox, {', '.join(t.name for t in tables)}"))
                start = 0
                while start < len(order):  # batches of any size, as the broker hands them over
                    size = rng.randint(1, 4)
                    await consumer.process(order[start : start + size])
                    start += size
                async with db.sessions() as session:
                    found[seed] = [
                        (await session.execute(select(t).order_by(*t.primary_key.columns))).all() for t in tables
                    ]
        finally:
            await db.dispose()
            await owner.dispose()
        in_order = found[0]
        assert [(r.alias, r.version) for r in in_order[1]] == [("prod", 3)]
        assert [(r.version, r.models) for r in in_order[2]] == [(2, ["other", "tiny-lora"])]
        assert [len(rows) for rows in in_order] == [1, 1, 1, 1, 1]
        differing = [seed for seed, contents in found.items() if contents != in_order]
        changed = [
            t.name
            for t, a, b in zip(tables, found[differing[0]] if differing else in_order, in_order, strict=True)
            if a != b
        ]
        assert not differing, f"orders of seeds {differing} gave other {changed}"
