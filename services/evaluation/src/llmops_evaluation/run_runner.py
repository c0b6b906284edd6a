"""Running one evaluation run on a worker: claim it under a lease, fetch its inputs, generate the outputs (a local
model in a child process, or an endpoint), score them, store the outputs' artifact and complete the run; or fail it
with the reason, or hand it back to the queue when the worker stops.

A worker holds a run under a lease in the evaluation database (:mod:`llmops_evaluation.leases`); a worker that dies
leaves its lease to expire and the next worker starts the run afresh (``attempt`` counts the starts; after
``max_attempts`` the run fails for good). Every write of a run's progress and its end checks, under the run row's
lock, that this worker still holds the lease (:mod:`llmops_evaluation.completion`): a worker that lost it writes
nothing more, so a run completes once, with one set of scores, whoever ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import orjson

from llmops.bus import add_to_outbox
from llmops.bus.faults import is_transient
from llmops.logging import bound_context, get_logger
from llmops.runtime import Runtime
from llmops.storage import ObjectStore, StoredObject
from llmops_evaluation import completion, repository
from llmops_evaluation.endpoint import generate_by_endpoint
from llmops_evaluation.examples import Example
from llmops_evaluation.inputs import InputError, fetch_examples, fetch_model
from llmops_evaluation.leases import Lease, RunControl, RunHandedOver, RunLost
from llmops_evaluation.ml.generate import Generated, GenerationSpec
from llmops_evaluation.ml.process import GenerationError, generate_in_process
from llmops_evaluation.scores import RunScores, score_run
from llmops_evaluation.settings import EvaluationSettings
from llmops_schemas import CloudEvent, EventPayload, new_event
from llmops_schemas.events import (
    EvaluationRunFailed,
    EvaluationRunProgress,
    EvaluationRunRequested,
    EvaluationRunStarted,
)

log = get_logger(__name__)

TERMINAL = ("completed", "failed")


class RunRunner:
    """Runs a worker's runs, one at a time (:meth:`handle`); :meth:`pause_all` when the worker stops."""

    def __init__(
        self,
        settings: EvaluationSettings,
        runtime: Runtime,
        name: str,
        work_root: Path,
        cache_dir: Path,
        stopping: asyncio.Event,
    ) -> None:
        self.settings, self.runtime, self.name = settings, runtime, name
        self.work_root, self.cache_dir = work_root, cache_dir
        self._stopping = stopping
        self._runs: set[RunControl] = set()  # the running run's (told to pause when the worker stops)

    @property
    def store(self) -> ObjectStore:
        assert self.runtime.store is not None
        return self.runtime.store

    def pause_all(self) -> None:
        for control in self._runs:
            control.pause.set()

    # -- one run -------------------------------------------------------------------------------------------------
    async def handle(self, request: EvaluationRunRequested, event: CloudEvent) -> bool:
        """Run one requested run to its end, or leave it to the worker that holds it; False when it did not end here
        and must be taken again (this worker is stopping and handed it back, or lost its lease)."""
        with bound_context(run_id=request.run_id, worker=self.name, correlation_id=event.correlationid):
            claim = await self._claim(request, event)
            if claim is None:  # ended, or held by another worker; while stopping, left to the next worker
                return not self._stopping.is_set()
            attempt, since = claim
            work = self.work_root / request.run_id
            work.mkdir(parents=True, exist_ok=True)
            control = RunControl()
            self._runs.add(control)
            if self._stopping.is_set():
                control.pause.set()
            held = Lease(self.runtime.db, request.run_id, self.name, self.settings.lease_seconds, control, since=since)
            lease = asyncio.create_task(held.hold())
            try:
                await self._run(request, event, attempt, control, work)
            except RunLost:
                log.warning("evaluation.run.lost", run_id=request.run_id)
                return False
            except RunHandedOver:
                log.info("evaluation.run.handed_over", run_id=request.run_id)
                return False
            except Exception as exc:
                if is_transient(exc):  # an outage, not the run's fault: the worker takes it again after a pause
                    await self._interrupted(request, exc)
                    raise
                details = getattr(exc, "child_traceback", None)
                log.warning("evaluation.run.failed", run_id=request.run_id, error=repr(exc), traceback=details)
                await self._fail(request, event, attempt, exc)
            finally:
                self._runs.discard(control)
                lease.cancel()
                await asyncio.gather(lease, return_exceptions=True)
                await asyncio.to_thread(shutil.rmtree, work, True)
            return True

    async def _claim(self, request: EvaluationRunRequested, event: CloudEvent) -> tuple[int, float] | None:
        """Claim the run; wait while another live worker holds it. None when there is nothing to do (ended, or failed
        now because its workers died on every attempt allowed); else the attempt and when its lease began."""
        while not self._stopping.is_set():
            since = time.monotonic()
            async with self.runtime.db.transaction() as session:
                gave_up = await repository.give_up_run(session, request.run_id, self.name, self.settings.max_attempts)
                if gave_up is not None:
                    log.warning("evaluation.run.gave_up", run_id=request.run_id, attempts=gave_up.attempt)
                    payload = EvaluationRunFailed(
                        run_id=request.run_id, project=request.project, reason=gave_up.error, attempt=gave_up.attempt
                    )
                    await add_to_outbox(session, self.stamp(payload, request, event))
                    return None
                claimed = await repository.claim_run(session, request.run_id, self.name, self.settings.lease_seconds)
                if claimed is not None:
                    return claimed.attempt, since
                run = await repository.get_run(session, request.run_id)
                if run is None or run.status in TERMINAL:
                    return None
            await asyncio.sleep(min(2.0, self.settings.lease_seconds / 3))
        return None

    def stamp(self, payload: EventPayload, request: EvaluationRunRequested, cause: CloudEvent | None) -> CloudEvent:
        return new_event(
            payload,
            subject=request.run_id,
            source=f"/llmops/evaluation/worker/{self.settings.pool}",
            actor=f"worker:{self.name}",
            project=request.project,
            correlation_id=None if cause is None else cause.correlationid,
            causation_id=None if cause is None else cause.id,
        )

    async def _run(
        self, request: EvaluationRunRequested, event: CloudEvent, attempt: int, control: RunControl, work: Path
    ) -> None:
        began = time.monotonic()
        if control.pause.is_set():
            await self._hand_over(request)
        examples, row_errors = await fetch_examples(self.store, request, work)
        total = len(examples) + len(row_errors)
        control.enter("generating", len(examples))
        async with self.runtime.db.transaction() as session:
            progress = {"stage": "generating", "done": 0, "total": len(examples)}
            if not await completion.record_progress(
                session, request.run_id, worker=self.name, progress=progress, examples_done=0, total=total
            ):
                raise RunLost(request.run_id)
            started = EvaluationRunStarted(
                run_id=request.run_id, project=request.project, worker=self.name, attempt=attempt, examples=total
            )
            await add_to_outbox(session, self.stamp(started, request, event))
        log.info("evaluation.run.started", run_id=request.run_id, attempt=attempt, examples=total)

        finished = asyncio.Event()
        reporter = asyncio.create_task(self._report(request, event, control, total, finished))
        try:
            generated = await self._generate(request, examples, control)
            if control.lost.is_set():
                raise RunLost(request.run_id)
            if generated is None:  # stopped by the worker's stop
                await self._hand_over(request)
            control.enter("scoring", len(examples) * len(request.scorers))
            scores = await asyncio.to_thread(
                score_run,
                examples,
                row_errors,
                generated,
                request.scorers,
                resamples=self.settings.bootstrap_resamples,
                on_scorer_done=control.add,
            )
        finally:
            finished.set()
            await asyncio.gather(reporter, return_exceptions=True)
        artifact = await self._store_artifact(scores, work)
        async with self.runtime.db.transaction() as session:
            done = await completion.complete_run(
                session,
                self.runtime,
                request,
                worker=self.name,
                scores=scores,
                artifact=artifact,
                seconds=time.monotonic() - began,
                stamp=lambda payload: self.stamp(payload, request, event),
                resamples=self.settings.bootstrap_resamples,
            )
        if not done:
            raise RunLost(request.run_id)
        log.info("evaluation.run.completed", run_id=request.run_id, examples=total, artifact=artifact.sha256)

    async def _generate(
        self, request: EvaluationRunRequested, examples: list[Example], control: RunControl
    ) -> dict[int, Generated] | None:
        """Every example's output by index; None when the worker's stop (or a lost lease) stopped generation."""
        spec = GenerationSpec.of(request.generation, self.settings.generation_batch_size)
        inputs = [(example.index, example.input) for example in examples]
        generated: dict[int, Generated] = {}

        def keep(results: list[Generated]) -> None:
            for result in results:
                generated[result.index] = result
            control.add(len(results))
            control.generated += len(results)

        target = request.target
        if target.kind == "endpoint":
            assert target.endpoint is not None
            complete = await generate_by_endpoint(
                target.endpoint,
                target.endpoint_model,
                inputs,
                spec,
                concurrency=self.settings.endpoint_concurrency,
                timeout_seconds=self.settings.endpoint_timeout_seconds,
                on_done=lambda result: keep([result]),
                should_stop=control.should_stop,
            )
            return generated if complete else None
        files = await fetch_model(self.store, target, self.cache_dir)
        seconds = await asyncio.to_thread(
            generate_in_process,
            files.model_dir,
            files.adapter_dir,
            inputs,
            spec,
            on_batch=keep,
            should_stop=control.should_stop,
            threads=self.settings.threads,
        )
        return None if seconds is None else generated

    async def _store_artifact(self, scores: RunScores, work: Path) -> StoredObject:
        """Every example's record as JSONL in the object store."""
        path = work / "examples.jsonl"

        def write() -> None:
            with path.open("wb") as out:
                for record in scores.records:
                    out.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

        await asyncio.to_thread(write)
        return await self.store.put_file(path, content_type="application/x-ndjson")

    async def _report(
        self, request: EvaluationRunRequested, event: CloudEvent, control: RunControl, total: int, done: asyncio.Event
    ) -> None:
        """Record and publish progress at most once an interval, while it changes, until ``done``."""
        last: tuple[str, int] | None = None
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(self.settings.progress_interval_seconds, 0.1))
            now = (control.stage, control.done)
            if done.is_set() or now == last or control.lost.is_set():
                continue
            last = now
            await self._flush(request, event, control, total)

    async def _flush(self, request: EvaluationRunRequested, event: CloudEvent, control: RunControl, total: int) -> None:
        stage, done, of = control.stage, control.done, control.total
        rate = done / max(time.monotonic() - control.stage_started, 1e-6)
        progress: dict[str, Any] = {"stage": stage, "done": done, "total": of, "examples_per_second": round(rate, 3)}
        examples_done = control.generated
        async with self.runtime.db.transaction() as session:
            if not await completion.record_progress(
                session, request.run_id, worker=self.name, progress=progress, examples_done=examples_done, total=total
            ):
                control.lost.set()  # another worker may hold the run now: its progress is no longer ours to write
                return
            payload = EvaluationRunProgress(run_id=request.run_id, project=request.project, **progress)
            await add_to_outbox(session, self.stamp(payload, request, event))

    async def _interrupted(self, request: EvaluationRunRequested, error: Exception) -> None:
        """The run met an outage (Postgres, Kafka or the object store out of reach, seen under ``make chaos``): it is
        queued again for its next start, which counts as no attempt. With the database away too, its lease runs out
        instead and the next start counts as an attempt (``max_attempts`` bounds them)."""
        log.warning("evaluation.run.interrupted", run_id=request.run_id, error=repr(error))
        try:
            async with self.runtime.db.transaction() as session:
                await completion.hand_back(session, request.run_id, worker=self.name)
        except Exception as exc:
            log.warning("evaluation.run.requeue_failed", run_id=request.run_id, error=repr(exc))

    async def _hand_over(self, request: EvaluationRunRequested) -> None:
        """Queue the run again, unleased, for the next worker of the pool (which starts it afresh)."""
        async with self.runtime.db.transaction() as session:
            if not await completion.hand_back(session, request.run_id, worker=self.name):
                raise RunLost(request.run_id)
        raise RunHandedOver(request.run_id)

    async def _fail(self, request: EvaluationRunRequested, event: CloudEvent, attempt: int, error: Exception) -> None:
        reason = str(error) if isinstance(error, InputError | GenerationError) else repr(error)
        async with self.runtime.db.transaction() as session:
            await completion.fail_run(
                session,
                request,
                worker=self.name,
                reason=reason,
                attempt=attempt,
                stamp=lambda payload: self.stamp(payload, request, event),
            )
