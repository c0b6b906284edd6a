"""A monitoring policy's ``retrain`` action on real Postgres: one job per policy event, from the model version's own
lineage on the newest non-deprecated version of the dataset, its request caused by the policy event; through the
service function and through the projections consumer (whose inbox sees the event twice). Nothing is requested for
a model version or dataset unknown here or of another project, a dataset the job checks refuse, or another action."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import select

from llmops_schemas import CloudEvent, new_event, topics
from llmops_schemas.envelope import utcnow
from llmops_schemas.events import MonitoringPolicyTriggered, TrainingJobRequested
from llmops_schemas.events.training import BaseModelRef, DatasetRef, PromptRef
from llmops_training import repository, retraining, service
from llmops_training.api import Hyperparameters
from llmops_training.models import jobs

from .conftest import outbox_events

pytestmark = pytest.mark.integration

SHA = "a" * 64
#: The original job's settings, as the API stores them (every field, checkpoints filled in).
SETTINGS = Hyperparameters(max_steps=3, learning_rate=1e-3, lora_rank=4, seed=7).model_dump(mode="json") | {
    "checkpoint_every": 7
}


@pytest.fixture
def project() -> str:
    return f"proj-{uuid.uuid4().hex[:8]}"


async def dataset_version(
    training, project: str, dataset_id: str, version: int, *, deprecated: bool = False, fmt: str = "instruction"
) -> dict[str, Any]:
    """A version of dataset ``dataset_id`` as the projection consumer writes it."""
    values = {
        "version_id": str(uuid.uuid4()),
        "dataset_id": dataset_id,
        "project": project,
        "name": "support",
        "version": version,
        "format": fmt,
        "uri": f"s3://llmops/sha256/{version}",
        "sha256": f"{version}" * 64,
        "row_count": 10,
        "splits": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 42},
    }
    async with training.runtime.db.transaction() as session:
        await service.project_dataset_version(session, values)
        if deprecated:
            await service.project_deprecation(session, values["version_id"], "leaked", utcnow(), str(uuid.uuid4()))
    return values


async def trained_version(
    training, project: str, dataset: dict[str, Any], *, prompt: dict[str, Any] | None = None, split: str = "validation"
) -> str:
    """A model version ``support-bot`` v1 registered by a finished lora job of pool gpu on ``dataset``; its id."""
    base_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())
    request = TrainingJobRequested(
        job_id=job_id,
        project=project,
        pool="gpu",
        model_name="support-bot",
        method="lora",
        hyperparameters=SETTINGS,
        base_model=BaseModelRef(base_model_id=base_id, name="tiny", source="upload", manifest_sha256=SHA),
        dataset=DatasetRef(**{k: dataset[k] for k in DatasetRef.model_fields if k in dataset}, split=split),
        prompt=None if prompt is None else PromptRef(**prompt),
        requested_by="eve",
    )
    job = {
        "id": job_id,
        "project": project,
        "model_name": "support-bot",
        "status": "running",
        "worker": "w1",
        "pool": "gpu",
        "method": "lora",
        "hyperparameters": SETTINGS,
        "base_model_id": base_id,
        "dataset_version_id": dataset["version_id"],
        "request": request.model_dump(mode="json"),
        "requested_by": "eve",
    }
    base = {"id": base_id, "project": project, "name": "tiny", "source": "upload", "manifest_sha256": SHA}
    async with training.runtime.db.transaction() as session:
        await repository.insert_base_model(session, base | {"created_by": "eve"})
        await repository.insert_job(session, job)
        return await service.complete_job(
            session,
            request,
            worker="w1",
            manifest_sha256=SHA,
            merged_manifest_sha256=None,
            trained_metrics={"final_loss": 0.5},
            seconds=1.0,
            base_lineage={"name": "tiny", "source": "upload", "resolved_revision": SHA},
            stamp=lambda payload: new_event(payload, subject=job_id, source="/tests", project=project),
        )


def policy_event(project: str, action: str = "retrain", **fields: Any) -> CloudEvent:
    payload = MonitoringPolicyTriggered(
        **{
            "project": project,
            "policy_id": str(uuid.uuid4()),
            "policy": "retrain on drift",
            "on": "drift",
            "action": action,
            "cause_event_id": str(uuid.uuid4()),
            "cause_type": "monitoring.drift.detected",
            "requested_by": "mona",
        }
        | fields
    )
    return new_event(
        payload, subject=payload.policy_id, source="/llmops/monitoring", project=project, correlation_id="corr-1"
    )


async def deliver(training, event: CloudEvent):
    payload = MonitoringPolicyTriggered.model_validate(event.data)
    async with training.runtime.db.transaction() as session:
        return await retraining.retrain_for_policy(session, training.runtime, training.settings, event, payload)


async def jobs_of(training, project: str) -> list:
    """The jobs of ``project`` but the one that trained the version."""
    query = select(jobs).where(jobs.c.project == project, jobs.c.status == "queued").order_by(jobs.c.created_at)
    async with training.runtime.db.sessions() as session:
        return list((await session.execute(query)).all())


async def requested(training, project: str) -> list[dict]:
    return [
        e
        for e in await outbox_events(training)
        if e["type"] == "training.job.requested" and e["data"]["project"] == project
    ]


class TestARetrainAction:
    async def test_requests_one_job_on_the_newest_dataset_version_with_the_lineages_settings(self, training, project):
        dataset_id = str(uuid.uuid4())
        first = await dataset_version(training, project, dataset_id, 1)
        newest = await dataset_version(training, project, dataset_id, 2)
        await dataset_version(training, project, dataset_id, 3, deprecated=True)
        version_id = await trained_version(training, project, first)
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset_id)

        job = await deliver(training, event)

        assert job.id == retraining.job_id_of(event.id)
        [row] = await jobs_of(training, project)
        assert (row.id, row.model_name, row.pool, row.method) == (job.id, "support-bot", "gpu", "lora")
        assert row.hyperparameters == SETTINGS
        assert (row.dataset_version_id, row.request["dataset"]["version"]) == (newest["version_id"], 2)
        assert row.request["dataset"]["split"] == "validation"  # the original job's split
        assert row.request["base_model"]["name"] == "tiny" and row.requested_by == "mona"

    async def test_the_job_request_is_caused_by_the_policy_event_and_shares_its_correlation(self, training, project):
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset)
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset["dataset_id"])

        job = await deliver(training, event)

        [published] = await requested(training, project)
        assert (published["subject"], published["actor"]) == (job.id, "mona")
        assert (published["causationid"], published["correlationid"]) == (event.id, "corr-1")
        assert published["data"]["requested_by"] == "mona"

    async def test_delivered_twice_requests_one_job(self, training, project):
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset)
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset["dataset_id"])

        first, second = await deliver(training, event), await deliver(training, event)

        assert first is not None and second is None
        assert len(await jobs_of(training, project)) == 1 and len(await requested(training, project)) == 1

    async def test_without_a_dataset_retrains_on_the_newest_version_of_the_models_own(self, training, project):
        dataset_id = str(uuid.uuid4())
        first = await dataset_version(training, project, dataset_id, 1)
        version_id = await trained_version(training, project, first)
        newest = await dataset_version(training, project, dataset_id, 2)

        await deliver(training, policy_event(project, model_version_id=version_id))

        assert [row.dataset_version_id for row in await jobs_of(training, project)] == [newest["version_id"]]

    async def test_keeps_the_lineages_prompt_version(self, training, project):
        prompt = {"prompt_id": "p", "version_id": "prompt-v3", "name": "support-fmt", "version": 3, "hash": "c" * 64}
        async with training.runtime.db.transaction() as session:
            await repository.insert_prompt_version(
                session, {**prompt, "project": project, "template": {"kind": "text", "text": "Q: {{ prompt }}"}}
            )
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset, prompt=prompt | {"template": {}})

        await deliver(training, policy_event(project, model_version_id=version_id, dataset_id=dataset["dataset_id"]))

        assert [row.prompt_version_id for row in await jobs_of(training, project)] == ["prompt-v3"]


class TestARetrainActionThroughTheConsumer:
    async def test_the_same_event_in_two_batches_and_twice_in_one_requests_one_job(self, training, project):
        from llmops_training.consumers import projections_consumer

        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset)
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset["dataset_id"])
        consumer = projections_consumer(training.settings, training.runtime.db, training.runtime.broker)

        await consumer.process([record(event, 0), record(event, 1)])
        await consumer.process([record(event, 0)])

        [row] = await jobs_of(training, project)
        assert row.id == retraining.job_id_of(event.id)
        assert [e["causationid"] for e in await requested(training, project)] == [event.id]


def record(event: CloudEvent, offset: int) -> ConsumerRecord:
    value, key = event.to_bytes(), event.subject.encode()
    return ConsumerRecord(
        topic=topics.MONITORING,
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


class TestARetrainActionThatCannotBeRequested:
    async def test_an_unknown_model_version_requests_nothing(self, training, project):
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        event = policy_event(project, model_version_id=str(uuid.uuid4()), dataset_id=dataset["dataset_id"])

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == [] and await requested(training, project) == []

    async def test_a_model_version_id_that_is_no_uuid_requests_nothing(self, training, project):
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        event = policy_event(project, model_version_id="support-bot:1", dataset_id=dataset["dataset_id"])

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == []

    async def test_a_model_version_of_another_project_requests_nothing(self, training, project):
        other = f"other-{uuid.uuid4().hex[:8]}"
        dataset = await dataset_version(training, other, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, other, dataset)
        await dataset_version(training, project, dataset["dataset_id"], 2)
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset["dataset_id"])

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == [] and await jobs_of(training, other) == []

    async def test_an_unknown_dataset_requests_nothing(self, training, project):
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset)
        event = policy_event(project, model_version_id=version_id, dataset_id=str(uuid.uuid4()))

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == [] and await requested(training, project) == []

    async def test_a_dataset_of_another_project_requests_nothing(self, training, project):
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset)
        elsewhere = await dataset_version(training, f"other-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), 1)
        event = policy_event(project, model_version_id=version_id, dataset_id=elsewhere["dataset_id"])

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == []

    async def test_a_dataset_whose_versions_are_all_deprecated_requests_nothing(self, training, project):
        dataset_id = str(uuid.uuid4())
        first = await dataset_version(training, project, dataset_id, 1)
        version_id = await trained_version(training, project, first)
        async with training.runtime.db.transaction() as session:
            await service.project_deprecation(session, first["version_id"], "leaked", utcnow(), str(uuid.uuid4()))
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset_id)

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == []

    async def test_a_newest_version_in_a_format_training_refuses_requests_nothing(self, training, project):
        dataset_id = str(uuid.uuid4())
        first = await dataset_version(training, project, dataset_id, 1)
        version_id = await trained_version(training, project, first)
        await dataset_version(training, project, dataset_id, 2, fmt="preference")
        event = policy_event(project, model_version_id=version_id, dataset_id=dataset_id)

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == []


class TestOtherActions:
    @pytest.mark.parametrize("action", ["notify", "evaluate"])
    async def test_request_nothing(self, training, project, action):
        dataset = await dataset_version(training, project, str(uuid.uuid4()), 1)
        version_id = await trained_version(training, project, dataset)
        event = policy_event(
            project, action=action, model_version_id=version_id, dataset_id=dataset["dataset_id"], suite_id="s"
        )

        assert await deliver(training, event) is None
        assert await jobs_of(training, project) == [] and await requested(training, project) == []
