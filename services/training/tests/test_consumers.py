"""The projections of dataset and prompt events, on real Kafka: versions arrive, deprecation follows, a redelivered
event changes nothing, a malformed one goes to the dead-letter topic and the consumer carries on."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select

from llmops.bus import dlq
from llmops.settings import KafkaSettings
from llmops_schemas import new_event, topics
from llmops_schemas.events import DatasetVersionCreated, DatasetVersionDeprecated, PromptVersionCreated
from llmops_training.models import dataset_versions, prompt_versions

pytestmark = pytest.mark.integration
BOOTSTRAP = KafkaSettings().bootstrap_servers


@pytest.fixture
def offset_reset() -> str:
    return "earliest"  # the consumer must see what is published while it joins its group


async def publish(topic: str, *values: tuple[bytes, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def version_created(project: str, **overrides) -> DatasetVersionCreated:
    values = {
        "dataset_id": str(uuid.uuid4()),
        "version_id": str(uuid.uuid4()),
        "version": 1,
        "project": project,
        "name": "qa",
        "format": "instruction",
        "uri": "s3://llmops/sha256/ab/" + "ab" * 32,
        "sha256": "ab" * 32,
        "size_bytes": 10,
        "row_count": 2,
        "stats": {},
        "splits": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 42},
        "cleaning": {},
    }
    return DatasetVersionCreated(**(values | overrides))


async def eventually(training, query, expected, within: float = 90):
    deadline = time.monotonic() + within
    while True:
        async with training.runtime.db.sessions() as session:
            found = (await session.execute(query)).all()
        if found == expected:
            return
        assert time.monotonic() < deadline, f"{found} != {expected}"
        await asyncio.sleep(0.2)


class TestProjections:
    async def test_versions_deprecation_and_prompts_are_projected_once(self, training):
        project = f"proj-{uuid.uuid4().hex[:8]}"
        created = version_created(project)
        event = new_event(created, subject=created.dataset_id, source="/tests", project=project)
        deprecated = new_event(
            DatasetVersionDeprecated(
                dataset_id=created.dataset_id, version_id=created.version_id, version=1, project=project, reason="old"
            ),
            subject=created.dataset_id,
            source="/tests",
        )
        prompt = new_event(
            PromptVersionCreated(
                prompt_id="p",
                version_id=str(uuid.uuid4()),
                version=3,
                project=project,
                name="fmt",
                template={"kind": "text", "text": "Q: {{ prompt }}"},
                parameters={},
                hash="c" * 64,
                message="m",
            ),
            subject="p",
            source="/tests",
        )
        key = created.dataset_id.encode()
        await publish(topics.DATASETS, (key, event.to_bytes()), (key, event.to_bytes()))  # the second: a redelivery
        await publish(topics.PROMPTS, (b"p", prompt.to_bytes()))
        by_project = select(dataset_versions.c.name, dataset_versions.c.deprecated).where(
            dataset_versions.c.project == project
        )
        await eventually(training, by_project, [("qa", False)])
        await eventually(
            training, select(prompt_versions.c.version).where(prompt_versions.c.project == project), [(3,)]
        )
        await publish(topics.DATASETS, (key, deprecated.to_bytes()), (key, event.to_bytes()))
        await eventually(training, by_project, [("qa", True)])
        count = select(func.count()).select_from(dataset_versions).where(dataset_versions.c.project == project)
        await eventually(training, count, [(1,)])

    async def test_a_malformed_event_goes_to_the_dead_letter_topic_and_the_next_is_projected(self, training):
        project = f"proj-{uuid.uuid4().hex[:8]}"
        bad = new_event(version_created(project), subject="bad", source="/tests").model_dump(mode="json")
        bad["data"]["sha256"] = "not a hash"
        import orjson

        good = version_created(project, name="good")
        await publish(
            topics.DATASETS,
            (b"bad", orjson.dumps(bad)),
            (b"good", new_event(good, subject="good", source="/tests").to_bytes()),
        )
        await eventually(
            training, select(dataset_versions.c.name).where(dataset_versions.c.project == project), [("good",)]
        )
        # The topic's history may hold other runs' bad events (this group reads it from the start): look for ours.
        ours = [reason for value, reason in await dead_letters(training.settings.consumer_group) if bad["id"] in value]
        assert ours == [b"invalid_data"]


async def dead_letters(consumer: str) -> list[tuple[str, bytes]]:
    reader = AIOKafkaConsumer(topics.DEAD_LETTER, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest")
    await reader.start()
    found = []
    try:
        while batch := await reader.getmany(timeout_ms=1500):
            for records in batch.values():
                found += [
                    (r.value.decode(), dict(r.headers)[dlq.REASON])
                    for r in records
                    if dict(r.headers).get("x-dlq-consumer") == consumer.encode()
                ]
    finally:
        await reader.stop()
    return found
