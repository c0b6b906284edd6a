"""The evaluation service's consumers on real Kafka: model events projected, and a registered version of a model a
suite is attached to starts one run of the suite's latest version, even when the event comes twice; so does a
monitoring policy's evaluate action on ``llmops.monitoring``."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from llmops.runtime import Actor
from llmops.settings import KafkaSettings
from llmops_evaluation import suites
from llmops_evaluation.models import model_aliases, model_versions, runs
from llmops_schemas import new_event, topics
from llmops_schemas.events import ModelAliasMoved, ModelVersionRegistered, MonitoringPolicyTriggered

from .conftest import outbox_events, seed_dataset, seed_model_version

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


async def eventually(evaluation, query, expected, within: float = 90):
    deadline = time.monotonic() + within
    while True:
        async with evaluation.runtime.db.sessions() as session:
            found = (await session.execute(query)).all()
        if found == expected:
            return
        assert time.monotonic() < deadline, f"{found} != {expected}"
        await asyncio.sleep(0.2)


def registered(project: str, name: str, version: int) -> ModelVersionRegistered:
    return ModelVersionRegistered(
        model_version_id=str(uuid.uuid4()),
        project=project,
        name=name,
        version=version,
        job_id=str(uuid.uuid4()),
        kind="adapter",
        manifest_sha256="a" * 64,
        lineage={
            "base_model": {
                "base_model_id": str(uuid.uuid4()),
                "name": "tiny",
                "source": "upload",
                "manifest_sha256": "b" * 64,
                "resolved_revision": "b" * 64,
            }
        },
        metrics={},
    )


async def test_a_registered_version_of_an_attached_model_runs_its_suites_once(evaluation):
    project = f"proj-{uuid.uuid4().hex[:8]}"
    await seed_dataset(evaluation, project=project)
    body = {
        "name": "auto",
        "description": "",
        "dataset": {"name": "qa", "version": 1, "split": "test"},
        "prompt": None,
        "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": 0},
        "scorers": [{"type": "exact_match"}],
        "gates": [],
        "models": ["tiny-lora"],
        "triggers": ["model.version.registered"],
    }
    async with evaluation.runtime.db.transaction() as session:
        await suites.create_suite_version(
            session, evaluation.runtime, evaluation.settings, project=project, body=body, actor=Actor(subject="eve")
        )
    attached = registered(project, "tiny-lora", 1)
    other = registered(project, "unrelated", 1)
    event = new_event(attached, subject=attached.model_version_id, source="/tests", project=project)
    unrelated = new_event(other, subject=other.model_version_id, source="/tests", project=project)
    moved = new_event(
        ModelAliasMoved(
            project=project, name="tiny-lora", alias="production", from_version=None, to_version=1, reason="first"
        ),
        subject="tiny-lora",
        source="/tests",
    )
    key = b"tiny-lora"
    # the second copy of the event is a redelivery: it must not start a second run
    await publish(
        topics.MODELS,
        (key, event.to_bytes()),
        (key, event.to_bytes()),
        (b"u", unrelated.to_bytes()),
        (key, moved.to_bytes()),
    )
    await eventually(
        evaluation,
        select(model_versions.c.name).where(model_versions.c.project == project).order_by(model_versions.c.name),
        [("tiny-lora",), ("unrelated",)],
    )
    await eventually(
        evaluation,
        select(model_aliases.c.alias, model_aliases.c.version).where(model_aliases.c.project == project),
        [("production", 1)],
    )
    await eventually(
        evaluation,
        select(runs.c.model_name, runs.c.model_version, runs.c.trigger).where(runs.c.project == project),
        [("tiny-lora", 1, "model.version.registered")],
    )
    requested = [
        e
        for e in await outbox_events(evaluation)
        if e["type"] == "evaluation.run.requested" and e["data"]["project"] == project
    ]
    assert len(requested) == 1
    assert requested[0]["data"]["target"]["model_version_id"] == attached.model_version_id
    assert requested[0]["data"]["target"]["base_model"]["manifest_sha256"] == "b" * 64
    assert requested[0]["data"]["trigger"] == "model.version.registered"


async def test_a_policys_evaluate_action_on_the_monitoring_topic_runs_its_suite_once(evaluation):
    project = f"proj-{uuid.uuid4().hex[:8]}"
    await seed_dataset(evaluation, project=project)
    body = {
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
    async with evaluation.runtime.db.transaction() as session:
        suite = await suites.create_suite_version(
            session, evaluation.runtime, evaluation.settings, project=project, body=body, actor=Actor(subject="eve")
        )
    model = await seed_model_version(evaluation, project=project)

    def triggered(action: str) -> MonitoringPolicyTriggered:
        return MonitoringPolicyTriggered(
            project=project,
            policy_id=str(uuid.uuid4()),
            policy=action,
            on="drift",
            action=action,
            cause_event_id=str(uuid.uuid4()),
            cause_type="monitoring.drift.detected",
            model_version_id=model["model_version_id"],
            suite_id=suite.suite_id,
            requested_by="mona",
        )

    evaluate, notify = triggered("evaluate"), triggered("notify")
    event = new_event(evaluate, subject=evaluate.policy_id, source="/tests", project=project, correlation_id="c-1")
    other = new_event(notify, subject=notify.policy_id, source="/tests", project=project)
    # the second copy is a redelivery: one run, one request
    await publish(
        topics.MONITORING,
        (b"p", event.to_bytes()),
        (b"p", event.to_bytes()),
        (b"n", other.to_bytes()),
    )
    await eventually(
        evaluation,
        select(runs.c.model_version_id, runs.c.trigger, runs.c.requested_by).where(runs.c.project == project),
        [(model["model_version_id"], "monitoring.policy.triggered", "mona")],
    )
    await asyncio.sleep(1)  # time for a second copy to do harm if it could
    requested = [
        e
        for e in await outbox_events(evaluation)
        if e["type"] == "evaluation.run.requested" and e["data"]["project"] == project
    ]
    assert [(e["causationid"], e["correlationid"]) for e in requested] == [(event.id, "c-1")]
