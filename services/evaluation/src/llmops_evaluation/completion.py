"""How a run ends, each in one transaction, and only while its worker still holds the run's lease (checked under the
run row's lock, so a worker that lost it writes nothing): completed (its examples' scores, metrics, artifact,
``evaluation.run.completed`` and the gates' decision), failed, or handed back to the queue by a stopping worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.runtime import Runtime
from llmops.storage import StoredObject
from llmops_evaluation import gating, repository
from llmops_evaluation.scores import RunScores
from llmops_schemas import CloudEvent, EventPayload
from llmops_schemas.envelope import utcnow
from llmops_schemas.events import EvaluationRunCompleted, EvaluationRunFailed, EvaluationRunRequested

Stamp = Callable[[EventPayload], CloudEvent]


async def complete_run(
    session: AsyncSession,
    runtime: Runtime,
    request: EvaluationRunRequested,
    *,
    worker: str,
    scores: RunScores,
    artifact: StoredObject,
    seconds: float,
    stamp: Stamp,
    resamples: int = 2000,
) -> bool:
    """Record the run's end: its examples, metrics and artifact, ``evaluation.run.completed``, the gates' decision
    (relative rules' intervals bootstrapped ``resamples`` times). False (nothing written) when ``worker`` no longer
    holds the run."""
    if not await repository.holds_lease(session, request.run_id, worker):
        return False
    await repository.insert_run_examples(session, [_example_row(request.run_id, r) for r in scores.records])
    metrics = {name: summary.model_dump(mode="json") for name, summary in scores.metrics.items()}
    total = len(scores.records)
    await repository.update_run(
        session,
        request.run_id,
        status="completed",
        finished_at=utcnow(),
        lease_until=None,
        metrics=metrics,
        signatures=scores.signatures,
        artifact_uri=artifact.uri,
        artifact_sha256=artifact.sha256,
        examples_total=total,
        examples_done=total,
        progress={"stage": "completed", "done": total, "total": total},
    )
    payload = EvaluationRunCompleted(
        run_id=request.run_id,
        project=request.project,
        suite=request.suite,
        target=request.target,
        examples=total,
        metrics=scores.metrics,
        signatures=scores.signatures,
        artifact_uri=artifact.uri,
        artifact_sha256=artifact.sha256,
        seconds=max(0.0, seconds),
    )
    completed = stamp(payload)
    await add_to_outbox(session, completed)
    await gating.decide_gates(
        session, runtime, request.run_id, resamples=resamples, correlation_id=completed.correlationid
    )
    return True


def _example_row(run_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "index": record["index"],
        "scores": record["scores"],
        "errors": record["errors"] or None,
        "unparseable": record["unparseable"] or None,
        "latency_ms": record["latency_ms"],
    }


async def fail_run(
    session: AsyncSession, request: EvaluationRunRequested, *, worker: str, reason: str, attempt: int, stamp: Stamp
) -> bool:
    """Fail the run with ``reason`` and publish ``evaluation.run.failed``; False when ``worker`` no longer holds it."""
    if not await repository.holds_lease(session, request.run_id, worker):
        return False
    await repository.update_run(
        session, request.run_id, status="failed", finished_at=utcnow(), error=reason, lease_until=None
    )
    payload = EvaluationRunFailed(run_id=request.run_id, project=request.project, reason=reason, attempt=attempt)
    await add_to_outbox(session, stamp(payload))
    return True


async def hand_back(session: AsyncSession, run_id: str, *, worker: str) -> bool:
    """Queue the run again for the next worker (this one is stopping); False when it no longer holds it."""
    if not await repository.holds_lease(session, run_id, worker):
        return False
    await repository.release_run(session, run_id)
    return True


async def record_progress(
    session: AsyncSession, run_id: str, *, worker: str, progress: dict[str, Any], examples_done: int, total: int
) -> bool:
    """Record where the run is; False (nothing written) when ``worker`` no longer holds it."""
    if not await repository.holds_lease(session, run_id, worker):
        return False
    await repository.update_run(session, run_id, progress=progress, examples_done=examples_done, examples_total=total)
    return True
