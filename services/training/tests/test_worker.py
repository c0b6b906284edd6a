"""The training worker on real Kafka, Postgres and object store: jobs run end to end and register model versions
with lineage; a SIGKILLed worker's job resumes from its checkpoint on another worker and registers once; a job whose
data cannot train fails and the worker goes on; a job that meets an outage of the object store is queued again and
completes once the store is back; cancellation; the same seed gives the same loss curve."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from llmops.artifacts import fetch_directory
from llmops.testing import worker_behind_a_link
from llmops_training.worker import TrainingWorker

from .conftest import ENGINEER, VIEWER, outbox_events, register_tiny, seed_dataset

pytestmark = pytest.mark.integration

TERMINAL = ("completed", "failed", "cancelled")


def job_body(**overrides) -> dict:
    hyperparameters = {"max_steps": 30, "batch_size": 8, "learning_rate": 5e-3, "max_seq_length": 64, "seed": 7}
    hyperparameters |= overrides.pop("hyperparameters", {})
    return {
        "base_model": "tiny",
        "dataset": {"name": "qa", "version": 1},
        "method": "lora",
        "hyperparameters": hyperparameters,
    } | overrides


async def start_job(client, **overrides) -> dict:
    response = await client.post("/projects/p1/training/jobs", json=job_body(**overrides), headers=ENGINEER)
    assert response.status_code == 201, response.text
    return response.json()


async def job_of(client, job_id: str) -> dict:
    return (await client.get(f"/projects/p1/training/jobs/{job_id}", headers=VIEWER)).json()


async def wait_for(client, job_id: str, predicate, *, within: float = 240) -> dict:
    deadline = time.monotonic() + within
    while True:
        job = await job_of(client, job_id)
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job}"
        await asyncio.sleep(0.2)


async def finished(client, job_id: str, *, within: float = 240) -> dict:
    return await wait_for(client, job_id, lambda job: job["status"] in TERMINAL, within=within)


async def losses(client, job_id: str) -> list[float]:
    metrics = (await client.get(f"/projects/p1/training/jobs/{job_id}/metrics", headers=VIEWER)).json()
    return [m["loss"] for m in metrics if m["loss"] is not None]


@pytest.fixture
async def worker(training_settings):
    running = TrainingWorker(training_settings, name="test-worker")
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.ready.wait(), 60)
    yield running
    running.stop()
    await asyncio.wait_for(task, 60)


@pytest.fixture
async def seeded(training, client, tiny_model):
    await register_tiny(client, tiny_model)
    return await seed_dataset(training)


class TestALoraJob:
    async def test_trains_registers_a_version_with_lineage_and_the_adapter_generates(
        self, client, seeded, worker, training, tmp_path
    ):
        job = await finished(client, (await start_job(client))["id"])
        assert job["status"] == "completed", job
        curve = await losses(client, job["id"])
        assert len(curve) == 30 and curve[-1] < curve[0]

        model = (await client.get("/projects/p1/models/tiny-lora", headers=VIEWER)).json()
        assert [v["version"] for v in model["versions"]] == [1]
        version = (await client.get("/projects/p1/models/tiny-lora/versions/1", headers=VIEWER)).json()
        assert version["kind"] == "adapter" and "adapter_model.safetensors" in version["files"]
        lineage = version["lineage"]
        assert lineage["dataset"]["sha256"] == seeded["sha256"]
        assert lineage["base_model"]["manifest_sha256"] and lineage["method"] == "lora"
        assert lineage["hyperparameters"]["seed"] == 7 and lineage["platform_version"]

        base = (await client.get("/projects/p1/base-models/tiny", headers=VIEWER)).json()
        base_dir = await fetch_directory(training.runtime.store, base["manifest_sha256"], tmp_path / "base")
        adapter = await fetch_directory(training.runtime.store, version["manifest_sha256"], tmp_path / "adapter")
        from llmops_training.ml.generate import generate

        text = await asyncio.to_thread(generate, base_dir, "Question 1: what colour is item 1?", adapter_dir=adapter)
        assert isinstance(text, str) and text.strip()

        events = [e for e in await outbox_events(training) if e["subject"] in (job["id"], version["id"])]
        types = [e["type"] for e in events]
        assert types[:2] == ["training.job.requested", "training.job.started"] and types[-2:] == [
            "model.version.registered",
            "training.job.completed",
        ]
        # Throttled: at most one progress event an interval, however fast the steps (every step is in the metrics).
        # On a loaded machine a step can outlast the interval, so the count alone says nothing; their times do.
        times = [datetime.fromisoformat(e["time"]) for e in events if e["type"] == "training.job.progress"]
        span = (max(times) - min(times)).total_seconds()
        assert 1 <= len(times) <= span / training.settings.progress_interval_seconds + 2

    async def test_a_full_fine_tune_registers_full_weights(self, client, seeded, worker):
        job = await finished(client, (await start_job(client, method="full"))["id"])
        assert job["status"] == "completed", job
        curve = await losses(client, job["id"])
        assert curve[-1] < curve[0]
        version = (await client.get("/projects/p1/models/tiny-full/versions/1", headers=VIEWER)).json()
        assert version["kind"] == "full" and "model.safetensors" in version["files"]


class TestReproducibility:
    async def test_the_same_job_and_seed_give_the_same_loss_curve(self, client, seeded, worker):
        first = await finished(client, (await start_job(client, model_name="run-a"))["id"])
        second = await finished(client, (await start_job(client, model_name="run-b"))["id"])
        assert first["status"] == second["status"] == "completed"
        assert await losses(client, first["id"]) == await losses(client, second["id"])


class TestFailures:
    async def test_a_job_whose_data_cannot_train_fails_and_the_worker_takes_the_next(
        self, training, client, seeded, worker
    ):
        await seed_dataset(training, name="broken", rows=[{"prompt": "no completion here"}] * 4)
        bad = await start_job(client, dataset={"name": "broken", "version": 1})
        good = await start_job(client)
        failed = await finished(client, bad["id"])
        assert failed["status"] == "failed" and "completion" in failed["error"]
        assert (await finished(client, good["id"]))["status"] == "completed"

    async def test_a_hub_model_that_cannot_be_resolved_fails_the_job_with_the_reason(
        self, client, seeded, worker, monkeypatch
    ):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        response = await client.post(
            "/projects/p1/base-models", json={"name": "remote", "hub_id": "org/not-here"}, headers=ENGINEER
        )
        assert response.status_code == 201
        failed = await finished(client, (await start_job(client, base_model="remote"))["id"])
        assert failed["status"] == "failed" and "cannot resolve base model 'org/not-here'" in failed["error"]


class TestAnOutageOfTheObjectStore:
    async def test_a_job_that_meets_it_is_queued_again_not_failed_and_completes_once_the_store_is_back(
        self, client, seeded, training, training_settings
    ):
        with capture_logs() as logs:
            job = await self.outage_met_and_waited_out(client, training, training_settings)
        (first, *_) = job.pop("requeued")
        assert job["status"] == "completed", job
        assert "outage" in first["data"]["reason"] and "MaxRetryError" in first["data"]["reason"]
        assert job["attempt"] <= 2, job  # the starts that met the outage were hand-overs, not attempts
        told = [line["event"] for line in logs]
        # said once by the job's runner, with its cause; the worker only says it waits (no traceback of an outage)
        assert "training.job.interrupted" in told and "training.worker.job_waits_out_outage" in told, set(told)
        assert "training.worker.job_interrupted" not in told

    async def outage_met_and_waited_out(self, client, training, training_settings) -> dict:
        async with worker_behind_a_link(TrainingWorker, training_settings, name="test-worker-outage") as link:
            await link.cut()  # from now on the worker's way to the store: connection refused
            job_id = (await start_job(client))["id"]

            async def requeued() -> list[dict]:
                events = await outbox_events(training)
                return [e for e in events if e["subject"] == job_id and e["type"] == "training.job.requeued"]

            deadline = time.monotonic() + 120
            while not await requeued():
                assert time.monotonic() < deadline, await job_of(client, job_id)
                await asyncio.sleep(0.2)
            assert (await job_of(client, job_id))["status"] in ("queued", "running")  # not failed
            await link.restore()
            job = await finished(client, job_id)
        return {**job, "requeued": await requeued()}


class TestCancellation:
    async def test_a_running_job_stops_at_its_next_step(self, client, seeded, worker):
        job = await start_job(client, hyperparameters={"max_steps": 5000, "checkpoint_every": 5000})
        await wait_for(client, job["id"], lambda j: j["status"] == "running" and j["step"] > 0)
        response = await client.post(f"/projects/p1/training/jobs/{job['id']}/cancel", headers=ENGINEER)
        assert response.status_code == 200
        cancelled = await finished(client, job["id"])
        assert cancelled["status"] == "cancelled" and cancelled["step"] < 5000
        assert cancelled["model_version_id"] is None


class TestAStoppingWorker:
    async def test_hands_its_job_over_at_a_checkpoint_and_the_next_worker_resumes_it(
        self, training_settings, training, client, seeded
    ):
        leaving = TrainingWorker(training_settings, name="leaving")
        task = asyncio.create_task(leaving.run())
        await asyncio.wait_for(leaving.ready.wait(), 60)
        # no scheduled checkpoint in this job: the one it resumes from is the hand-over's
        job = await start_job(client, hyperparameters={"max_steps": 400, "checkpoint_every": 1000, "batch_size": 4})
        await wait_for(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 5, within=120)
        leaving.stop()
        await asyncio.wait_for(task, 60)
        handed = await job_of(client, job["id"])
        assert handed["status"] == "queued" and handed["worker"] is None, handed
        logs = (await client.get(f"/projects/p1/training/jobs/{job['id']}/logs", headers=VIEWER)).json()
        handover = [line["message"] for line in logs if "handed over" in line["message"]]
        assert len(handover) == 1 and f"at step {handed['step']}," in handover[0], handover
        requeued = [e for e in await outbox_events(training) if e["type"] == "training.job.requeued"]
        assert [(e["data"]["at_step"], e["data"]["worker"]) for e in requeued] == [(handed["step"], "leaving")]

        arriving = TrainingWorker(training_settings, name="arriving")
        task = asyncio.create_task(arriving.run())
        try:
            done = await finished(client, job["id"], within=240)
        finally:
            arriving.stop()
            await asyncio.wait_for(task, 60)
        assert done["status"] == "completed" and done["worker"] == "arriving" and done["attempt"] == 2, done
        assert done["resumed_from_step"] == handed["step"] >= 5
        model = (await client.get("/projects/p1/models/tiny-lora", headers=VIEWER)).json()
        assert [v["job_id"] for v in model["versions"]] == [job["id"]]
        assert len(await losses(client, job["id"])) == 400


class TestALostLease:
    async def test_stops_the_job_and_nothing_more_of_it_is_written(self, training, client, seeded, worker):
        from sqlalchemy import text

        job = await start_job(client, hyperparameters={"max_steps": 5000, "checkpoint_every": 5000})
        await wait_for(client, job["id"], lambda j: j["status"] == "running" and j["step"] > 0)
        running = next(t for t in asyncio.all_tasks() if t.get_name() == f"job-{job['id']}")
        # Another worker takes the job over: under the row's lock, so every write before this is committed.
        steal = (
            "UPDATE jobs SET worker = 'thief', lease_until = now() + interval '1 hour' WHERE id = :id "
            "RETURNING step, (SELECT max(step) FROM job_metrics WHERE job_id = :id)"
        )
        async with training.runtime.db.transaction() as session:
            # The lock first: a statement that waits for it keeps its older snapshot in its subquery, so the
            # UPDATE's own max(step) could miss the metrics a flush committed while it waited.
            await session.execute(text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": job["id"]})
            step, last_metric = (await session.execute(text(steal), {"id": job["id"]})).one()
        published = len(await outbox_events(training))
        await asyncio.wait_for(running, 60)  # the training process stopped and the worker let the job go

        after = await job_of(client, job["id"])
        assert after["status"] == "running" and after["worker"] == "thief" and after["step"] == step, after
        metrics = (await client.get(f"/projects/p1/training/jobs/{job['id']}/metrics", headers=VIEWER)).json()
        assert max(m["step"] for m in metrics) == last_metric
        assert len(await outbox_events(training)) == published
        assert after["model_version_id"] is None


def worker_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "LLMOPS_TRAINING_DATABASE_URL": settings.db_url,
        "LLMOPS_TRAINING_WORKER_GROUP": settings.worker_group,
        "LLMOPS_TRAINING_WORKER_OFFSET_RESET": settings.worker_offset_reset,
        "LLMOPS_TRAINING_LEASE_SECONDS": str(settings.lease_seconds),
        "LLMOPS_TRAINING_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "LLMOPS_TRAINING_PROGRESS_INTERVAL_SECONDS": "0.2",
        "LLMOPS_TRAINING_WORK_DIR": str(settings.work_dir),
        "LLMOPS_TRAINING_CACHE_DIR": str(settings.cache_dir),
        "LLMOPS_TRAINING_OUTBOX_POLL_INTERVAL": "0.05",
    }


async def logged(process, text: str) -> None:
    """Read the process's stderr until a line holds ``text``; keep draining it afterwards (a full pipe blocks)."""
    while True:
        line = await process.stderr.readline()
        assert line, f"the process ended before logging {text!r}"
        if text.encode() in line:
            break

    async def drain() -> None:
        while await process.stderr.readline():
            pass

    process.drainer = asyncio.get_running_loop().create_task(drain())


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            found += [child, *descendants(child)]
    return found


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


class TestAWorkerKilledMidJob:
    async def test_another_worker_resumes_from_the_checkpoint_and_one_version_is_registered(
        self, training_settings, client, seeded
    ):
        command = [str(Path(sys.executable).parent / "llmops-training"), "worker", "--name", "doomed"]
        doomed = await asyncio.create_subprocess_exec(
            *command, env=worker_env(training_settings), stderr=asyncio.subprocess.PIPE
        )
        try:
            await asyncio.wait_for(logged(doomed, "training.worker.ready"), 120)
            job = await start_job(client, hyperparameters={"max_steps": 400, "checkpoint_every": 20, "batch_size": 4})
            await wait_for(client, job["id"], lambda j: j["status"] == "running" and j["step"] > 25, within=120)
            helpers = descendants(doomed.pid)  # its forkserver and the training process
        finally:
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
        killed_at = (await job_of(client, job["id"]))["step"]
        assert killed_at < 400, "the job ended before the worker could be killed"
        assert len(helpers) >= 2, helpers
        for _ in range(100):  # the training process dies with its worker, not at the job's end
            if not alive(helpers):
                break
            await asyncio.sleep(0.1)
        assert not alive(helpers), "the training process outlived its worker"

        survivor = TrainingWorker(training_settings, name="survivor")
        task = asyncio.create_task(survivor.run())
        try:
            done = await finished(client, job["id"], within=240)
        finally:
            survivor.stop()
            await asyncio.wait_for(task, 60)
        assert done["status"] == "completed", done
        assert done["worker"] == "survivor" and done["attempt"] == 2
        assert done["resumed_from_step"] is not None and done["resumed_from_step"] >= 20
        model = (await client.get("/projects/p1/models/tiny-lora", headers=VIEWER)).json()
        assert [v["job_id"] for v in model["versions"]] == [job["id"]]
        logs = (await client.get(f"/projects/p1/training/jobs/{job['id']}/logs", headers=VIEWER)).json()
        assert any("resuming from the checkpoint" in line["message"] for line in logs)
        assert len(await losses(client, job["id"])) == 400


async def partition_of(job_id: str) -> int:
    """The partition of the training topic a job's events go to (Kafka's default partitioner, as the relay's)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import murmur2

    from llmops.settings import KafkaSettings
    from llmops_schemas import topics

    producer = AIOKafkaProducer(bootstrap_servers=KafkaSettings().bootstrap_servers)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topics.TRAINING))
    finally:
        await producer.stop()
    return partitions[(murmur2(job_id.encode()) & 0x7FFFFFFF) % len(partitions)]


async def start_worker_process(name: str, env: dict[str, str]):
    command = [str(Path(sys.executable).parent / "llmops-training"), "worker", "--name", name]
    process = await asyncio.create_subprocess_exec(*command, env=env, stderr=asyncio.subprocess.PIPE)
    await asyncio.wait_for(logged(process, "training.worker.ready"), 120)
    return process


class TestAJobThatKillsItsWorkerEveryTime:
    async def test_fails_after_the_cap_and_the_next_job_on_its_partition_runs(
        self, training_settings, training, client, seeded
    ):
        # The test SIGKILLs each worker once it has started the job: the real failure (a worker dying mid-job, as an
        # OOM kill does), with no test-only path in the worker.
        cap = 2
        env = worker_env(training_settings) | {"LLMOPS_TRAINING_MAX_ATTEMPTS": str(cap)}
        doomed = await start_worker_process("doomed-1", env)
        try:
            job = await start_job(client, hyperparameters={"max_steps": 5000, "checkpoint_every": 5000})
            # the next job must queue behind it on its partition; others requested on the way are cancelled
            while True:
                following = await start_job(client, model_name="following")
                if await partition_of(following["id"]) == await partition_of(job["id"]):
                    break
                await client.post(f"/projects/p1/training/jobs/{following['id']}/cancel", headers=ENGINEER)
            for attempt in range(1, cap + 1):
                if attempt > 1:
                    doomed = await start_worker_process(f"doomed-{attempt}", env)
                await wait_for(client, job["id"], lambda j, n=attempt: j["status"] == "running" and j["attempt"] == n)
                doomed.send_signal(signal.SIGKILL)
                await doomed.wait()
        finally:
            if doomed.returncode is None:
                doomed.send_signal(signal.SIGKILL)
                await doomed.wait()

        last = TrainingWorker(training_settings.model_copy(update={"max_attempts": cap}), name="last")
        task = asyncio.create_task(last.run())
        try:
            failed = await finished(client, job["id"], within=120)
            done = await finished(client, following["id"], within=240)
        finally:
            last.stop()
            await asyncio.wait_for(task, 60)
        reason = f"gave up after {cap} attempts: the worker running it died each time"
        assert failed["status"] == "failed" and failed["error"] == reason and failed["attempt"] == cap, failed
        assert failed["model_version_id"] is None
        events = [e for e in await outbox_events(training) if e["subject"] == job["id"]]
        assert [e["data"]["reason"] for e in events if e["type"] == "training.job.failed"] == [reason]
        assert done["status"] == "completed" and done["worker"] == "last", done
