"""A monitoring policy's ``evaluate`` action, through the service layer on real Postgres: one run of the suite's
latest version on the policy's model version per policy event, its request caused by that event; an unknown suite or
model version, or a model version of another project, starts nothing; other actions are not this service's."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from llmops.runtime import Actor
from llmops_evaluation import service, suites
from llmops_evaluation.models import runs
from llmops_schemas import CloudEvent, new_event
from llmops_schemas.events import MonitoringPolicyTriggered

from .conftest import outbox_events, seed_dataset, seed_model_version

pytestmark = pytest.mark.integration

SUITE = {
    "name": "regression",
    "description": "",
    "dataset": {"name": "qa", "version": 1, "split": "test"},
    "prompt": None,
    "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": 0},
    "scorers": [{"type": "exact_match"}],
    "gates": [],
    "models": [],
    "triggers": [],
}


async def new_suite(evaluation, project: str, versions: int = 1) -> str:
    """A suite of ``project`` with ``versions`` versions; its id."""
    for n in range(versions):
        async with evaluation.runtime.db.transaction() as session:
            row = await suites.create_suite_version(
                session,
                evaluation.runtime,
                evaluation.settings,
                project=project,
                body=SUITE | {"description": f"v{n + 1}"},
                actor=Actor(subject="eve"),
            )
    return row.suite_id


def policy_event(project: str, action: str = "evaluate", **fields) -> CloudEvent:
    payload = MonitoringPolicyTriggered(
        **{
            "project": project,
            "policy_id": str(uuid.uuid4()),
            "policy": "re-evaluate on drift",
            "on": "drift",
            "action": action,
            "cause_event_id": str(uuid.uuid4()),
            "cause_type": "monitoring.drift.detected",
            "deployment_id": str(uuid.uuid4()),
            "requested_by": "mona",
        }
        | fields
    )
    correlation = str(uuid.uuid4())
    return new_event(
        payload, subject=payload.policy_id, source="/llmops/monitoring", project=project, correlation_id=correlation
    )


async def deliver(evaluation, event: CloudEvent) -> str | None:
    """The policy event handled as the projections consumer handles it, in a transaction of its own."""
    payload = MonitoringPolicyTriggered.model_validate(event.data)
    async with evaluation.runtime.db.transaction() as session:
        return await service.run_for_policy(session, evaluation.runtime, evaluation.settings, event, payload)


async def runs_of(evaluation, project: str) -> list[tuple]:
    query = select(runs.c.suite_version_id, runs.c.model_version_id, runs.c.trigger, runs.c.requested_by).where(
        runs.c.project == project
    )
    async with evaluation.runtime.db.sessions() as session:
        return list((await session.execute(query)).all())


async def requested(evaluation, project: str) -> list[dict]:
    return [
        e
        for e in await outbox_events(evaluation)
        if e["type"] == "evaluation.run.requested" and e["data"]["project"] == project
    ]


@pytest.fixture
def project() -> str:
    return f"proj-{uuid.uuid4().hex[:8]}"


class TestAnEvaluateAction:
    async def test_starts_one_run_of_the_suites_latest_version_on_the_model_version(self, evaluation, project):
        await seed_dataset(evaluation, project=project)
        suite_id = await new_suite(evaluation, project, versions=2)
        model = await seed_model_version(evaluation, project=project)
        event = policy_event(project, suite_id=suite_id, model_version_id=model["model_version_id"])

        run_id = await deliver(evaluation, event)

        [published] = await requested(evaluation, project)
        assert published["subject"] == run_id
        assert published["data"]["suite"]["suite_id"] == suite_id and published["data"]["suite"]["version"] == 2
        assert published["data"]["target"]["model_version_id"] == model["model_version_id"]
        assert (published["data"]["trigger"], published["data"]["requested_by"]) == (
            "monitoring.policy.triggered",
            "mona",
        )
        assert [(r.model_version_id, r.trigger, r.requested_by) for r in await runs_of(evaluation, project)] == [
            (model["model_version_id"], "monitoring.policy.triggered", "mona")
        ]

    async def test_the_run_request_is_caused_by_the_policy_event_and_shares_its_correlation(self, evaluation, project):
        await seed_dataset(evaluation, project=project)
        suite_id = await new_suite(evaluation, project)
        model = await seed_model_version(evaluation, project=project)
        event = policy_event(project, suite_id=suite_id, model_version_id=model["model_version_id"])

        await deliver(evaluation, event)

        [published] = await requested(evaluation, project)
        assert (published["causationid"], published["correlationid"]) == (event.id, event.correlationid)
        assert published["actor"] == "mona"

    async def test_delivered_twice_starts_one_run(self, evaluation, project):
        await seed_dataset(evaluation, project=project)
        suite_id = await new_suite(evaluation, project)
        model = await seed_model_version(evaluation, project=project)
        event = policy_event(project, suite_id=suite_id, model_version_id=model["model_version_id"])

        first, second = await deliver(evaluation, event), await deliver(evaluation, event)

        assert first is not None and second is None
        assert len(await runs_of(evaluation, project)) == 1
        assert len(await requested(evaluation, project)) == 1

    async def test_each_policy_event_starts_its_own_run(self, evaluation, project):
        await seed_dataset(evaluation, project=project)
        suite_id = await new_suite(evaluation, project)
        model = await seed_model_version(evaluation, project=project)

        for _ in range(2):  # the policy fired again after its cool-down: a new event
            await deliver(
                evaluation, policy_event(project, suite_id=suite_id, model_version_id=model["model_version_id"])
            )

        assert len(await runs_of(evaluation, project)) == 2


class TestAnEvaluateActionThatCannotRun:
    async def test_an_unknown_suite_starts_no_run(self, evaluation, project):
        model = await seed_model_version(evaluation, project=project)
        event = policy_event(project, suite_id=str(uuid.uuid4()), model_version_id=model["model_version_id"])

        assert await deliver(evaluation, event) is None
        assert await runs_of(evaluation, project) == [] and await requested(evaluation, project) == []

    async def test_a_suite_id_that_is_no_uuid_starts_no_run(self, evaluation, project):
        model = await seed_model_version(evaluation, project=project)
        event = policy_event(project, suite_id="regression", model_version_id=model["model_version_id"])

        assert await deliver(evaluation, event) is None
        assert await runs_of(evaluation, project) == []

    async def test_an_unknown_model_version_starts_no_run(self, evaluation, project):
        await seed_dataset(evaluation, project=project)
        suite_id = await new_suite(evaluation, project)
        event = policy_event(project, suite_id=suite_id, model_version_id=str(uuid.uuid4()))

        assert await deliver(evaluation, event) is None
        assert await runs_of(evaluation, project) == [] and await requested(evaluation, project) == []

    async def test_a_model_version_of_another_project_starts_no_run(self, evaluation, project):
        await seed_dataset(evaluation, project=project)
        suite_id = await new_suite(evaluation, project)
        elsewhere = await seed_model_version(evaluation, project=f"other-{uuid.uuid4().hex[:8]}")
        event = policy_event(project, suite_id=suite_id, model_version_id=elsewhere["model_version_id"])

        assert await deliver(evaluation, event) is None
        assert await runs_of(evaluation, project) == []

    async def test_a_suite_of_another_project_starts_no_run(self, evaluation, project):
        other = f"other-{uuid.uuid4().hex[:8]}"
        await seed_dataset(evaluation, project=other)
        suite_id = await new_suite(evaluation, other)
        model = await seed_model_version(evaluation, project=project)
        event = policy_event(project, suite_id=suite_id, model_version_id=model["model_version_id"])

        assert await deliver(evaluation, event) is None
        assert await runs_of(evaluation, project) == [] and await runs_of(evaluation, other) == []


class TestOtherActions:
    @pytest.mark.parametrize("action", ["notify", "retrain"])
    async def test_start_nothing(self, evaluation, project, action):
        await seed_dataset(evaluation, project=project)
        suite_id = await new_suite(evaluation, project)
        model = await seed_model_version(evaluation, project=project)
        event = policy_event(
            project, action=action, suite_id=suite_id, model_version_id=model["model_version_id"], dataset_id="ds"
        )

        assert await deliver(evaluation, event) is None
        assert await runs_of(evaluation, project) == [] and await requested(evaluation, project) == []
