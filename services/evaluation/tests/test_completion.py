"""How a run ends: completed in one transaction (examples, metrics, artifact, event) by the worker holding its lease;
a worker that lost the lease writes nothing; a stopping worker hands the run back to the queue."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from llmops.storage import StoredObject
from llmops_evaluation import completion, repository
from llmops_evaluation.scores import RunScores
from llmops_schemas import new_event
from llmops_schemas.events import EvaluationRunRequested
from llmops_schemas.events.evaluation import MetricSummary

from .worker_support import (
    create_suite,
    examples_of,
    instruction_rows,
    outbox_events,
    request_run,
    run_of,
    seed_dataset,
)

pytestmark = pytest.mark.integration

SCORES = RunScores(
    records=[
        {"index": i, "scores": {"exact_match": 1.0}, "errors": {}, "unparseable": {}, "latency_ms": 5.0}
        for i in range(3)
    ],
    metrics={"exact_match": MetricSummary(value=1.0, mean=1.0, low=1.0, high=1.0, n=3)},
    signatures={},
)
ARTIFACT = StoredObject(bucket="b", key="k", sha256="a" * 64, size=1)


@pytest.fixture
async def claimed(evaluation):
    """A requested run of an endpoint, claimed by worker-a; its request."""
    await seed_dataset(evaluation, instruction_rows(3))
    await create_suite(evaluation)
    run_id = await request_run(evaluation, endpoint={"url": "http://127.0.0.1:9/"})
    async with evaluation.runtime.db.transaction() as session:
        assert await repository.claim_run(session, run_id, "worker-a", 30) is not None
    return EvaluationRunRequested.model_validate((await run_of(evaluation, run_id)).request)


def stamp(request):
    return lambda payload: new_event(payload, subject=request.run_id, source="/tests")


async def complete(evaluation, request) -> bool:
    async with evaluation.runtime.db.transaction() as session:
        return await completion.complete_run(
            session,
            evaluation.runtime,
            request,
            worker="worker-a",
            scores=SCORES,
            artifact=ARTIFACT,
            seconds=1.0,
            stamp=stamp(request),
        )


class TestCompleting:
    async def test_records_examples_metrics_artifact_and_the_event_at_once(self, evaluation, claimed):
        assert await complete(evaluation, claimed)
        run = await run_of(evaluation, claimed.run_id)
        assert run.status == "completed" and run.lease_until is None and run.artifact_sha256 == "a" * 64
        assert run.metrics["exact_match"]["n"] == 3 and run.examples_done == 3
        assert [r.index for r in await examples_of(evaluation, claimed.run_id)] == [0, 1, 2]
        types = [e["type"] for e in await outbox_events(evaluation, claimed.run_id)]
        # the run evaluated an endpoint: the decision's subject is the run (a model version's would be its id)
        assert types == ["evaluation.run.requested", "evaluation.run.completed", "evaluation.gate.decided"]

    async def test_a_worker_that_lost_its_lease_writes_nothing(self, evaluation, claimed):
        async with evaluation.runtime.db.transaction() as session:  # another worker took the run over
            await session.execute(text("UPDATE runs SET worker = 'thief' WHERE id = :id"), {"id": claimed.run_id})
        assert not await complete(evaluation, claimed)
        async with evaluation.runtime.db.transaction() as session:
            failed = await completion.fail_run(
                session, claimed, worker="worker-a", reason="x", attempt=1, stamp=stamp(claimed)
            )
        assert not failed
        run = await run_of(evaluation, claimed.run_id)
        assert run.status == "running" and run.worker == "thief" and run.metrics is None
        assert await examples_of(evaluation, claimed.run_id) == []
        assert [e["type"] for e in await outbox_events(evaluation, claimed.run_id)] == ["evaluation.run.requested"]

    async def test_an_expired_lease_writes_nothing(self, evaluation, claimed):
        async with evaluation.runtime.db.transaction() as session:
            await session.execute(
                text("UPDATE runs SET lease_until = now() - interval '1 second' WHERE id = :id"), {"id": claimed.run_id}
            )
        assert not await complete(evaluation, claimed)


class TestHandingBack:
    async def test_a_stopping_worker_queues_the_run_again_without_counting_the_attempt(self, evaluation, claimed):
        async with evaluation.runtime.db.transaction() as session:
            assert await completion.hand_back(session, claimed.run_id, worker="worker-a")
        run = await run_of(evaluation, claimed.run_id)
        assert run.status == "queued" and run.worker is None and run.lease_until is None and run.attempt == 0
