"""The projections of other services' events hold whatever order the events are handled in (a dead letter replayed
after the events that followed it, say): a deployment's status is its latest event's, and its request still fills in
what it asked for; a gate's decision and an admin's override of it, the latest by event time. Each case is handled
in every order, on the service's real database."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from llmops.db import Database
from llmops_monitoring import evaluation_reference, repository
from llmops_monitoring.evaluation_reference import NoGatedEvaluation
from llmops_monitoring.models import deployments
from llmops_schemas import CloudEvent, new_event, parse_payload
from llmops_schemas.events import (
    DeploymentReady,
    DeploymentRequested,
    DeploymentStopped,
    EvaluationGateDecided,
    EvaluationGateOverridden,
)
from llmops_schemas.events.deployments import ServedModel
from llmops_schemas.events.evaluation import SuiteRef, Target
from llmops_schemas.events.training import BaseModelRef

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

START = datetime(2026, 12, 1, 12, tzinfo=UTC)
SUITE = SuiteRef(suite_id="s1", version_id="sv1", name="support", version=1)


@pytest.fixture
async def db(monitoring_settings):
    database = Database(monitoring_settings.db_url)
    yield database
    await database.dispose()


def at(payload, minute: int, subject: str) -> CloudEvent:
    event = new_event(payload, subject=subject, source="/llmops/test", project="p1")
    return event.model_copy(update={"time": START + timedelta(minutes=minute)})


def deployment_events(deployment_id: str) -> list[CloudEvent]:
    """Requested, ready, stopped, a minute apart."""
    model = ServedModel(
        model_version_id="mv-1",
        name="assistant",
        version=1,
        kind="adapter",
        manifest_sha256="a" * 64,
        base_model=BaseModelRef(base_model_id="bm-1", name="tiny", source="upload", manifest_sha256="b" * 64),
    )
    requested = DeploymentRequested(
        deployment_id=deployment_id,
        project="p1",
        name="support",
        pool="cpu",
        backend="transformers",
        model=model,
        requested_by="eve",
    )
    common = {"deployment_id": deployment_id, "project": "p1", "replica": 0, "worker": "w1"}
    ready = DeploymentReady(
        **common,
        endpoint="http://127.0.0.1:9/v1",
        backend="transformers",
        served_model="assistant",
        model_version_id="mv-1",
        attempt=1,
    )
    stopped = DeploymentStopped(**common)
    return [at(payload, n, deployment_id) for n, payload in enumerate((requested, ready, stopped))]


async def handle_deployment(db: Database, event: CloudEvent) -> None:
    handler = repository.deployment_requested if event.type == "deployment.requested" else repository.deployment_status
    async with db.transaction() as session:
        await handler(session, event, parse_payload(event))


async def row_of(db: Database, deployment_id: str):
    async with db.sessions() as session:
        return (await session.execute(select(deployments).where(deployments.c.deployment_id == deployment_id))).one()


@pytest.mark.parametrize("count", [2, 3])
async def test_a_deployment_status_holds_in_any_order(db, count):
    """Every order of the first ``count`` events (requested, ready[, stopped]), each handled twice (redelivered):
    the status of the latest, and the request's fields."""
    for n, order in enumerate(itertools.permutations(range(count))):
        deployment_id = f"dep-{count}-{n}"
        events = deployment_events(deployment_id)[:count]
        for index in order:
            await handle_deployment(db, events[index])
        for index in order:
            await handle_deployment(db, events[index])
        row = await row_of(db, deployment_id)
        assert row.status == ("ready", "stopped")[count - 2], order
        assert row.updated_at == events[-1].time, order
        assert (row.name, row.model_name, row.model_version_id, row.requested_at) == (
            "support",
            "assistant",
            "mv-1",
            events[0].time,
        ), order


async def test_a_status_before_its_request_is_kept_and_completed(db):
    """The ready event alone makes the row (no name yet, the model version from the ready event); the request
    replayed after it fills in the rest and leaves the status."""
    requested, ready, _ = deployment_events("dep-late")
    await handle_deployment(db, ready)
    row = await row_of(db, "dep-late")
    assert (row.status, row.name, row.requested_at, row.model_version_id) == ("ready", None, None, "mv-1")
    await handle_deployment(db, requested)
    row = await row_of(db, "dep-late")
    assert (row.status, row.name, row.requested_at) == ("ready", "support", requested.time)


def gate_events(version: str, run_id: str, outcomes: list[bool]) -> list[CloudEvent]:
    """The gate's decision (the first outcome) and admin overrides of it (the others), a minute apart."""
    target = Target(kind="model_version", model_name="assistant", model_version=1, model_version_id=version)
    decision_id = str(uuid.uuid4())
    common = {"run_id": run_id, "project": "p1", "suite": SUITE, "target": target}
    payloads = [EvaluationGateDecided(decision_id=decision_id, passed=outcomes[0], rules=[], **common)]
    for passed in outcomes[1:]:
        payloads.append(
            EvaluationGateOverridden(
                override_id=str(uuid.uuid4()),
                decision_id=decision_id,
                passed=passed,
                reason="reviewed",
                actor="ada",
                **common,
            )
        )
    return [at(payload, n, version) for n, payload in enumerate(payloads)]


async def passed_run(db: Database, version: str) -> str | None:
    async with db.sessions() as session:
        try:
            return (await evaluation_reference.gating_run(session, "p1", version)).run_id
        except NoGatedEvaluation:
            return None


async def completed(db: Database, version: str, run_id: str) -> None:
    from llmops_monitoring.models import evaluation_runs

    async with db.transaction() as session:
        await session.execute(
            evaluation_runs.insert().values(
                run_id=run_id,
                project="p1",
                model_version_id=version,
                suite_version_id="sv1",
                artifact_sha256="c" * 64,
                examples=10,
                completed_at=START,
            )
        )


@pytest.mark.parametrize("outcomes", [[True, False], [False, True], [True, False, True], [False, True, False]])
async def test_the_latest_gate_decision_holds_in_any_order(db, outcomes):
    """A decision and its overrides, handled in every order (each twice): the run is a drift reference exactly when
    the latest of them passed it."""
    for n, order in enumerate(itertools.permutations(range(len(outcomes)))):
        version, run_id = f"mv-{n}-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
        await completed(db, version, run_id)
        events = gate_events(version, run_id, outcomes)
        for index in list(order) + list(order):
            async with db.transaction() as session:
                await evaluation_reference.gate_decided(session, events[index], parse_payload(events[index]))
        assert await passed_run(db, version) == (run_id if outcomes[-1] else None), order
