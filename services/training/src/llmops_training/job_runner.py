"""Running one training job on a worker: claim it under a lease, fetch its inputs, train it in a child process, and
register the model version, or fail, cancel or hand it over.

A worker holds a job under a lease in the training database (:mod:`llmops_training.leases`): the next worker waits
for the lease to expire, then resumes from the last checkpoint in the object store. The model version is registered
by the service layer (:func:`llmops_training.service.complete_job`) in the transaction that completes the job.
Training itself runs in a child process (``ml.process``: its own interpreter lock, memory and crash domain), watched
from a thread; progress, checkpoints and cancellation cross into the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any

from llmops import artifacts
from llmops.bus import add_to_outbox
from llmops.bus.faults import is_transient
from llmops.logging import bound_context, get_logger
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops_schemas import new_event
from llmops_schemas.envelope import utcnow
from llmops_schemas.events import (
    ModelVersionRegistered,
    TrainingJobCancelled,
    TrainingJobFailed,
    TrainingJobProgress,
    TrainingJobRequested,
    TrainingJobRequeued,
    TrainingJobStarted,
)
from llmops_training import artifacts as trained_artifacts
from llmops_training import repository, service
from llmops_training.examples import ExampleError, TrainingError
from llmops_training.inputs import fetch_inputs
from llmops_training.leases import JobControl, JobLost, Lease
from llmops_training.ml.process import TrainingProcessError, train_in_process
from llmops_training.settings import TrainingSettings

log = get_logger(__name__)

TERMINAL = ("completed", "failed", "cancelled")
#: Checkpoint folders kept on the worker's disk (older ones are in the object store).
KEEP_CHECKPOINTS = 2
#: Hyperparameters of a request that are the trainer's spec (the others are the worker's).
SPEC_FIELDS = (
    "epochs",
    "max_steps",
    "learning_rate",
    "batch_size",
    "gradient_accumulation",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "max_seq_length",
    "seed",
    "checkpoint_every",
    "bf16",
    "merge",
)


class JobRunner:
    """Runs a worker's jobs, one at a time (:meth:`handle`); :meth:`pause_all` when the worker stops."""

    def __init__(
        self,
        settings: TrainingSettings,
        runtime: Runtime,
        name: str,
        work_root: Path,
        cache_dir: Path,
        stopping: asyncio.Event,
    ) -> None:
        self.settings, self.runtime, self.name = settings, runtime, name
        self.pool = settings.pool
        self.work_root, self.cache_dir = work_root, cache_dir
        self._stopping = stopping
        self._jobs: set[JobControl] = set()  # the running job's (told to pause when the worker stops)

    @property
    def store(self) -> ObjectStore:
        assert self.runtime.store is not None
        return self.runtime.store

    def pause_all(self) -> None:
        for control in self._jobs:
            control.pause.set()

    # -- one job -------------------------------------------------------------------------------------------------
    async def handle(self, request: TrainingJobRequested, event) -> bool:
        """Run one requested job to its end, or leave it to the worker that holds it; False when it did not end here and
        must be taken again: this worker, stopping, handed it over (paused at a checkpoint), or lost its lease."""
        with bound_context(job_id=request.job_id, worker=self.name, correlation_id=event.correlationid):
            claim = await self._claim(request, event)
            if claim is None:  # ended, or held by another worker; while stopping, left to the next worker
                return not self._stopping.is_set()
            claimed, since = claim
            work = self.work_root / request.job_id
            work.mkdir(parents=True, exist_ok=True)
            control = JobControl()
            self._jobs.add(control)
            if self._stopping.is_set():
                control.pause.set()
            held = Lease(self.runtime.db, request.job_id, self.name, self.settings.lease_seconds, control, since=since)
            lease = asyncio.create_task(held.hold())
            try:
                return await self._train(request, event, claimed, control, work)
            except JobLost:
                log.warning("training.job.lost", job_id=request.job_id)
                return False  # whoever holds it now ends it; should its lease expire, it is taken again
            except Exception as exc:
                if is_transient(exc):  # an outage, not the job's fault: the worker takes it again after a pause
                    await self._interrupted(request, event, claimed.attempt, exc)
                    raise
                details = getattr(exc, "child_traceback", None)
                log.warning("training.job.failed", job_id=request.job_id, error=repr(exc), traceback=details)
                await self._fail(request, event, claimed.attempt, exc)
            finally:
                self._jobs.discard(control)
                lease.cancel()
                await asyncio.gather(lease, return_exceptions=True)
                await asyncio.to_thread(shutil.rmtree, work, True)
            return True

    async def _claim(self, request: TrainingJobRequested, event):
        """Claim the job; wait while another live worker holds it. None when there is nothing to do (ended, or failed
        now because its workers died on every attempt allowed); else the claimed job and when its lease began."""
        while not self._stopping.is_set():
            since = time.monotonic()
            async with self.runtime.db.transaction() as session:
                gave_up = await repository.give_up_job(session, request.job_id, self.name, self.settings.max_attempts)
                if gave_up is not None:
                    await self._gave_up(session, request, gave_up, event)
                    return None
                claimed = await repository.claim_job(session, request.job_id, self.name, self.settings.lease_seconds)
                if claimed is not None:
                    return claimed, since
                job = await repository.get_job(session, request.job_id)
                if job is None or job.status in TERMINAL:
                    return None
                if job.cancel_requested_by is not None and await repository.lease_expired(session, job.id):
                    await self._cancelled(session, request, None, job.cancel_requested_by, event=None)
                    return None
            await asyncio.sleep(min(2.0, self.settings.lease_seconds / 3))
        return None

    def event(self, payload, request: TrainingJobRequested, cause) -> Any:
        return new_event(
            payload,
            subject=payload.model_version_id if isinstance(payload, ModelVersionRegistered) else request.job_id,
            source=f"/llmops/training/worker/{self.pool}",
            actor=f"worker:{self.name}",
            project=request.project,
            correlation_id=None if cause is None else cause.correlationid,
            causation_id=None if cause is None else cause.id,
        )

    async def _train(self, request: TrainingJobRequested, event, claimed, control: JobControl, work: Path) -> bool:
        """Train and register; False when paused and handed over."""
        if control.pause.is_set():  # stopping before any work: nothing to save
            await self._hand_over(request, event, claimed.attempt, None)
            return False
        model_dir, examples, count, base_lineage = await fetch_inputs(self.store, request, work, self.cache_dir)
        spec_values = {k: v for k, v in request.hyperparameters.items() if k in SPEC_FIELDS and v is not None}
        spec_values["keep_checkpoints"] = KEEP_CHECKPOINTS
        if "target_modules" in spec_values:
            spec_values["target_modules"] = tuple(spec_values["target_modules"])
        resume_from = None
        async with self.runtime.db.transaction() as session:
            checkpoint = await repository.latest_checkpoint(session, request.job_id)
        if checkpoint is not None:
            resume_from = await artifacts.fetch_directory(
                self.store, checkpoint.manifest_sha256, work / "resume" / f"checkpoint-{checkpoint.step}"
            )
        max_steps = _planned_steps(count, request.hyperparameters)
        async with self.runtime.db.transaction() as session:
            await repository.update_job(
                session,
                request.job_id,
                max_steps=max_steps,
                resumed_from_step=None if checkpoint is None else checkpoint.step,
            )
            resumed = "" if checkpoint is None else f", resuming from the checkpoint at step {checkpoint.step}"
            await repository.add_log(
                session,
                request.job_id,
                "info",
                f"attempt {claimed.attempt} started on {self.name}: {count} examples, "
                f"{max_steps} steps planned{resumed}",
                self.name,
            )
            started = TrainingJobStarted(
                job_id=request.job_id,
                project=request.project,
                worker=self.name,
                attempt=claimed.attempt,
                resumed_from_step=None if checkpoint is None else checkpoint.step,
                max_steps=max_steps,
                examples=count,
            )
            await add_to_outbox(session, self.event(started, request, event))

        loop = asyncio.get_running_loop()
        hooks = _Hooks(self, request, control, loop)
        training_done = asyncio.Event()
        reporter = asyncio.create_task(self._report(request, event, control, training_done))
        started_at = time.monotonic()
        try:
            result = await asyncio.to_thread(
                _run_training,
                model_dir,
                examples,
                request.method,
                spec_values,
                work,
                resume_from,
                hooks,
                self.settings.train_threads,
            )
            if hooks.upload is not None:
                await asyncio.wrap_future(hooks.upload)
        finally:
            training_done.set()
            await asyncio.gather(reporter, return_exceptions=True)
        if control.lost.is_set():
            raise JobLost(request.job_id)
        if result.status == "cancelled":
            async with self.runtime.db.transaction() as session:
                await self._cancelled(session, request, control.latest, control.cancelled_by or "unknown", event)
            return True
        if result.status == "paused":
            await self._hand_over(request, event, claimed.attempt, result.metrics["steps"])
            return False
        await self._register(request, event, result, base_lineage, time.monotonic() - started_at)
        return True

    async def _register(self, request: TrainingJobRequested, event, result, base_lineage, seconds: float) -> None:
        """Store the artifacts, then register the model version in the transaction that completes the job."""
        stored, merged = await trained_artifacts.put_trained(self.store, result.artifacts_dir)
        async with self.runtime.db.transaction() as session:
            await service.complete_job(
                session,
                request,
                worker=self.name,
                manifest_sha256=stored.sha256,
                merged_manifest_sha256=None if merged is None else merged.sha256,
                trained_metrics=result.metrics,
                seconds=seconds,
                base_lineage=base_lineage,
                stamp=lambda payload: self.event(payload, request, event),
            )

    async def _hand_over(self, request: TrainingJobRequested, event, attempt: int, step: int | None) -> None:
        """Queue the job again, unleased, for the next worker of the pool (which resumes from its last checkpoint)."""
        async with self.runtime.db.transaction() as session:
            job = await repository.get_job(session, request.job_id, for_update=True)
            if job is None or job.worker != self.name or job.status != "running":
                raise JobLost(request.job_id)
            await repository.requeue_job(session, request.job_id)
            at = "before training" if step is None else f"at step {step}, with a checkpoint there"
            await repository.add_log(
                session, request.job_id, "info", f"{self.name} is stopping: job handed over {at}", self.name
            )
            payload = TrainingJobRequeued(
                job_id=request.job_id,
                project=request.project,
                worker=self.name,
                attempt=attempt,
                at_step=step,
                reason="the worker is stopping",
            )
            await add_to_outbox(session, self.event(payload, request, event))
        log.info("training.job.handed_over", job_id=request.job_id, step=step)

    async def _interrupted(self, request: TrainingJobRequested, event, attempt: int, error: Exception) -> None:
        """The job met an outage (Postgres, Kafka or the object store out of reach, seen under ``make chaos``): it is
        queued again as a hand-over (its next start resumes from its last checkpoint and counts as no attempt), with a
        line in its log and ``training.job.requeued``. With the database away too, its lease runs out instead and
        the next start counts as an attempt (``max_attempts`` bounds them)."""
        log.warning("training.job.interrupted", job_id=request.job_id, error=repr(error))
        reason = f"an outage of the platform's infrastructure ({type(error).__name__})"
        try:
            async with self.runtime.db.transaction() as session:
                if not await repository.holds_lease(session, request.job_id, self.name):
                    return
                await repository.requeue_job(session, request.job_id)
                await repository.add_log(session, request.job_id, "warning", f"queued again: {reason}", self.name)
                payload = TrainingJobRequeued(
                    job_id=request.job_id, project=request.project, worker=self.name, attempt=attempt, reason=reason
                )
                await add_to_outbox(session, self.event(payload, request, event))
        except Exception as exc:
            log.warning("training.job.requeue_failed", job_id=request.job_id, error=repr(exc))

    async def _report(self, request, event, control: JobControl, done: asyncio.Event) -> None:
        """Flush progress every interval until ``done``, then once more (never cancelled mid-write: no step lost)."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(self.settings.progress_interval_seconds, 0.1))
            await self._flush(request, event, control)

    async def _flush(self, request: TrainingJobRequested, event, control: JobControl) -> None:
        """Record every step's figures since the last flush, and publish the latest progress (throttled)."""
        rows = []
        while control.metrics:
            rows.append(control.metrics.popleft())
        if not rows:
            return
        latest = control.latest
        async with self.runtime.db.transaction() as session:
            if control.lost.is_set() or not await repository.holds_lease(session, request.job_id, self.name):
                control.lost.set()  # another worker may hold the job now: its progress is no longer ours to write
                return
            await repository.record_metrics(session, request.job_id, rows)
            progress = {
                "step": latest.step,
                "max_steps": latest.max_steps,
                "epoch": latest.epoch,
                "loss": latest.loss,
                "learning_rate": latest.learning_rate,
                "tokens_per_second": latest.tokens_per_second,
                "eta_seconds": latest.eta_seconds,
            }
            await repository.update_job(
                session, request.job_id, step=latest.step, max_steps=latest.max_steps, progress=progress
            )
            payload = TrainingJobProgress(job_id=request.job_id, project=request.project, **_finite(progress))
            await add_to_outbox(session, self.event(payload, request, event))

    async def save_checkpoint(self, request: TrainingJobRequested, step: int, directory: Path, control) -> None:
        manifest = await artifacts.put_directory(self.store, directory)
        # The figures of the steps so far go in with the checkpoint, so a job resumed from it misses none of them
        # (a copy, taken at once by deque.copy: the next flush writes them again, idempotently, with the progress).
        rows = list(control.metrics.copy())
        async with self.runtime.db.transaction() as session:
            if control.lost.is_set() or not await repository.holds_lease(session, request.job_id, self.name):
                control.lost.set()  # the stored files are harmless (content-addressed); the job's rows are not ours
                return
            await repository.record_metrics(session, request.job_id, rows)
            await repository.add_checkpoint(session, request.job_id, step, manifest.sha256, self.name)
            await repository.add_log(
                session, request.job_id, "info", f"checkpoint at step {step} stored ({manifest.sha256[:12]})", self.name
            )

    async def _cancelled(self, session, request: TrainingJobRequested, latest, by: str, event) -> None:
        step = None if latest is None else latest.step
        await repository.update_job(session, request.job_id, status="cancelled", finished_at=utcnow(), lease_until=None)
        await repository.add_log(session, request.job_id, "info", f"cancelled at step {step}", self.name)
        payload = TrainingJobCancelled(job_id=request.job_id, project=request.project, at_step=step, cancelled_by=by)
        await add_to_outbox(session, self.event(payload, request, event))

    async def _gave_up(self, session, request: TrainingJobRequested, job, event) -> None:
        log.warning("training.job.gave_up", job_id=request.job_id, attempts=job.attempt - job.handovers)
        await repository.add_log(session, request.job_id, "error", f"failed: {job.error}", self.name)
        payload = TrainingJobFailed(
            job_id=request.job_id, project=request.project, reason=job.error, attempt=job.attempt
        )
        await add_to_outbox(session, self.event(payload, request, event))

    async def _fail(self, request: TrainingJobRequested, event, attempt: int, error: Exception) -> None:
        reason = str(error) if isinstance(error, ExampleError | TrainingError | TrainingProcessError) else repr(error)
        async with self.runtime.db.transaction() as session:
            job = await repository.get_job(session, request.job_id, for_update=True)
            if job is None or job.worker != self.name or job.status != "running":
                return
            await repository.update_job(
                session, request.job_id, status="failed", finished_at=utcnow(), error=reason, lease_until=None
            )
            await repository.add_log(session, request.job_id, "error", f"failed: {reason}", self.name)
            payload = TrainingJobFailed(job_id=request.job_id, project=request.project, reason=reason, attempt=attempt)
            await add_to_outbox(session, self.event(payload, request, event))


class _Hooks:
    """The trainer's hooks, called from the thread that watches the training process."""

    def __init__(self, runner: JobRunner, request, control: JobControl, loop: asyncio.AbstractEventLoop):
        self.runner, self.request, self.control, self.loop = runner, request, control, loop
        self.upload: concurrent.futures.Future | None = None

    def on_progress(self, progress) -> None:
        self.control.latest = progress
        self.control.metrics.append(
            _finite(
                {
                    "step": progress.step,
                    "epoch": progress.epoch,
                    "loss": progress.loss,
                    "learning_rate": progress.learning_rate,
                    "tokens_per_second": progress.tokens_per_second,
                }
            )
        )

    def should_stop(self) -> bool:
        return self.control.cancel.is_set() or self.control.lost.is_set()

    def should_pause(self) -> bool:
        return self.control.pause.is_set()

    def on_checkpoint(self, step: int, directory: Path) -> None:
        latest = self.control.latest
        if latest is not None and step >= latest.max_steps:
            return  # the trainer's save at the end: the job registers its artifacts next, nothing to resume from
        # Upload in the background while training goes on; the previous upload must be done first, since the
        # trainer deletes all but the last KEEP_CHECKPOINTS folders at its next save.
        self.wait_for_upload()
        self.upload = asyncio.run_coroutine_threadsafe(
            self.runner.save_checkpoint(self.request, step, directory, self.control), self.loop
        )

    def wait_for_upload(self) -> None:
        if self.upload is not None:
            self.upload.result()


def _run_training(model_dir, examples, method, spec_values, work: Path, resume_from, hooks, threads: int):
    from llmops_training.ml.trainer import TrainSpec

    spec = TrainSpec(method=method, **spec_values)
    return train_in_process(
        model_dir, examples, spec, work / "output", resume_from=resume_from, hooks=hooks, threads=threads
    )


def _planned_steps(examples: int, hyperparameters: dict[str, Any]) -> int:
    if hyperparameters.get("max_steps"):
        return int(hyperparameters["max_steps"])
    per_step = hyperparameters.get("batch_size", 8) * hyperparameters.get("gradient_accumulation", 1)
    return max(1, math.ceil(math.ceil(examples / per_step) * hyperparameters.get("epochs", 1.0)))


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: such figures become None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
