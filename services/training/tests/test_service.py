"""The training service layer without HTTP or a worker: a finished job completed and its model version registered."""

from __future__ import annotations

import pytest

from llmops_schemas import new_event
from llmops_schemas.events import TrainingJobRequested
from llmops_schemas.events.training import BaseModelRef, DatasetRef
from llmops_training import repository, service
from llmops_training.leases import JobLost

from .conftest import claimed_job, outbox_events

pytestmark = pytest.mark.integration

SHA = "a" * 64


async def running_job(training, worker: str = "w1") -> TrainingJobRequested:
    """A job held by ``worker``, as a worker's claim leaves it, and the request it was started from."""
    async with training.runtime.db.transaction() as session:
        job_id, base_id = await claimed_job(session, worker, 30, hyperparameters={"max_steps": 3})
    return TrainingJobRequested(
        job_id=job_id,
        project="p1",
        pool="cpu",
        model_name="tiny-lora",
        method="lora",
        hyperparameters={"max_steps": 3},
        base_model=BaseModelRef(base_model_id=base_id, name="tiny", source="upload", manifest_sha256=SHA),
        dataset=DatasetRef(
            dataset_id="ds",
            version_id="v1",
            name="qa",
            version=2,
            format="instruction",
            uri="s3://b/k",
            sha256=SHA,
            splits={"seed": 7},
        ),
        requested_by="eve",
    )


async def complete(training, request: TrainingJobRequested, worker: str = "w1") -> str:
    def stamp(payload):
        return new_event(payload, subject=request.job_id, source="/test", actor=f"worker:{worker}", project="p1")

    async with training.runtime.db.transaction() as session:
        return await service.complete_job(
            session,
            request,
            worker=worker,
            manifest_sha256=SHA,
            merged_manifest_sha256=None,
            trained_metrics={"final_loss": 0.5, "loss_history": [1.0, 0.7, 0.5], "steps": 3},
            seconds=1.23456,
            base_lineage={"name": "tiny", "source": "hub", "resolved_revision": "abc"},
            stamp=stamp,
        )


class TestCompletingAJob:
    async def test_registers_version_1_with_its_lineage_and_completes_the_job(self, training):
        request = await running_job(training)
        version_id = await complete(training, request)
        async with training.runtime.db.sessions() as session:
            job = await repository.get_job(session, request.job_id)
            version = await repository.model_version_of_job(session, request.job_id)
        assert (job.status, job.model_version_id, job.lease_until) == ("completed", version_id, None)
        assert (version.id, version.version, version.kind) == (version_id, 1, "adapter")
        assert version.metrics == {"final_loss": 0.5, "steps": 3, "wall_seconds": 1.235}
        assert (
            version.lineage["dataset"]["sha256"] == SHA and version.lineage["base_model"]["resolved_revision"] == "abc"
        )

    async def test_announces_the_version_and_the_completed_job(self, training):
        request = await running_job(training)
        version_id = await complete(training, request)
        events = [e for e in await outbox_events(training) if e.get("data", {}).get("job_id") == request.job_id]
        assert [e["type"] for e in events] == ["model.version.registered", "training.job.completed"]
        assert {e["data"]["model_version_id"] for e in events} == {version_id}

    async def test_a_worker_that_does_not_hold_the_job_cannot_complete_it(self, training):
        request = await running_job(training, worker="w1")
        with pytest.raises(JobLost):
            await complete(training, request, worker="w2")
        async with training.runtime.db.sessions() as session:
            assert (await repository.get_job(session, request.job_id)).status == "running"
            assert await repository.model_version_of_job(session, request.job_id) is None

    async def test_a_completed_job_is_not_completed_again(self, training):
        request = await running_job(training)
        await complete(training, request)
        with pytest.raises(JobLost):
            await complete(training, request)
