"""The projections of dataset and prompt events, on real Kafka: versions arrive, deprecation follows, a redelivered
event changes nothing, a malformed one goes to the dead-letter topic and the consumer carries on, a policy's retrain
action on ``llmops.monitoring`` requests one job; and on real Postgres, the same events in any order give the same
tables."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import func, select

from llmops.bus.dead_letters import DeadLetterReader, Selection
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
        # Its partition may still be behind the good one's: wait for the dead letter, not only for the good event.
        deadline = time.monotonic() + 90
        while not (ours := [r for v, r in await dead_letters(training.settings.consumer_group) if bad["id"] in v]):
            assert time.monotonic() < deadline, "the malformed event was not dead-lettered"
            await asyncio.sleep(0.5)
        assert ours == [b"invalid_data"]


async def dead_letters(consumer: str) -> list[tuple[str, bytes]]:
    """Every dead letter of ``consumer``, read to the topic's end (a pause in a busy topic does not end the read)."""
    async with DeadLetterReader(client_id="tests-training-dlq") as reader:
        return [
            (letter.value.decode(errors="replace"), (letter.reason or "").encode())
            async for letter in reader.scan(Selection(consumer=consumer))
        ]


def as_record(event, offset: int) -> ConsumerRecord:
    value, key = event.to_bytes(), event.subject.encode()
    return ConsumerRecord(
        topic=topics.DATASETS,
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


def deprecation_of(created: DatasetVersionCreated, reason: str):
    payload = DatasetVersionDeprecated(
        dataset_id=created.dataset_id,
        version_id=created.version_id,
        version=created.version,
        project=created.project,
        reason=reason,
    )
    return new_event(payload, subject=created.dataset_id, source="/tests")


def prompt_version(project: str, version: int):
    payload = PromptVersionCreated(
        prompt_id="p",
        version_id=f"prompt-version-{version}",
        version=version,
        project=project,
        name="fmt",
        template={"kind": "text", "text": f"Q{version}: {{{{ prompt }}}}"},
        parameters={},
        hash=f"{version}" * 64,
        message="m",
    )
    return new_event(payload, subject="p", source="/tests")


def history(project: str) -> list[ConsumerRecord]:
    """Dataset and prompt events with everything that reorders them in practice: deprecations (one twice, one of a
    version that never arrives), redeliveries of the same event, and versions re-announced under new event ids."""
    a, b, c = (version_created(project, name=name) for name in "abc")
    never = version_created(project, name="never")
    events = [new_event(v, subject=v.dataset_id, source="/tests", project=project) for v in (a, b, c)]
    events.append(new_event(a, subject=a.dataset_id, source="/tests", project=project))  # re-announced
    events += [deprecation_of(a, "first"), deprecation_of(a, "second"), deprecation_of(b, "old")]
    events.append(deprecation_of(never, "withdrawn"))
    events += [prompt_version(project, 1), prompt_version(project, 1), prompt_version(project, 2)]
    records = [as_record(event, offset) for offset, event in enumerate(events)]
    return [*records, records[2], records[6]]  # redelivered: c's creation and b's deprecation


class TestProjectionsInAnyOrder:
    async def test_every_order_of_the_same_events_gives_the_same_tables(self, training_settings):
        from sqlalchemy import text

        from llmops.bus import make_broker
        from llmops.db import Database
        from llmops_training.consumers import projections_consumer
        from llmops_training.models import dataset_version_deprecations

        db, owner = Database(training_settings.db_url), Database(training_settings.migrations_db_url)
        consumer = projections_consumer(training_settings, db, make_broker(training_settings.kafka))
        records = history("p1")
        tables = (dataset_versions, dataset_version_deprecations, prompt_versions)
        found = {}
        try:
            for seed in range(40):
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
                    contents = [
                        (await session.execute(select(t).order_by(*t.primary_key.columns))).all() for t in tables
                    ]
                found[seed] = contents
        finally:
            await db.dispose()
            await owner.dispose()

        in_order = found[0]
        assert sorted((r.name, r.deprecated, r.deprecated_reason) for r in in_order[0]) == [
            ("a", True, "first"),
            ("b", True, "old"),
            ("c", False, None),
        ]
        assert len(in_order[1]) == 3 and [r.version for r in in_order[2]] == [1, 2]
        differing = [seed for seed, contents in found.items() if contents != in_order]
        assert not differing, f"orders of seeds {differing} gave other tables, e.g. {found[differing[0]]}"


class TestPolicyActions:
    async def test_a_retrain_action_on_the_monitoring_topic_requests_one_job(self, training):
        from llmops_training.models import jobs
        from llmops_training.retraining import job_id_of

        from .test_retraining import dataset_version, policy_event, trained_version

        project = f"proj-{uuid.uuid4().hex[:8]}"
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset)
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset["dataset_id"])
        notify = policy_event(project, action="notify", model_version_id=version_id)
        # the second copy is a redelivery: one job
        await publish(topics.MONITORING, (b"p", event.to_bytes()), (b"p", event.to_bytes()), (b"n", notify.to_bytes()))
        await eventually(
            training,
            select(jobs.c.id, jobs.c.requested_by).where(jobs.c.project == project, jobs.c.status == "queued"),
            [(job_id_of(event.id), "mona")],
        )
