"""Policies closing the loop: a drift (alert, anomaly) event of a watched deployment or model asks for exactly one
action per cool-down, traceable to its cause (causation and correlation ids); a redelivered cause acts once; the
consumer on the monitoring topic does it from Kafka, dead-letters what is malformed."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import insert, select

from llmops.bus.dead_letters import DeadLetterReader, Selection
from llmops.errors import Problem
from llmops.runtime import Actor, Runtime
from llmops_monitoring import policies, repository
from llmops_monitoring.models import deployments, policy_actions
from llmops_monitoring.models import policies as policies_table
from llmops_schemas import CloudEvent, new_event, parse_payload, topics
from llmops_schemas.events import (
    DeploymentReady,
    DeploymentRequested,
    MonitoringAlertFired,
    MonitoringAnomalyDetected,
    MonitoringDriftDetected,
)
from llmops_schemas.events.deployments import ServedModel
from llmops_schemas.events.monitoring import Window
from llmops_schemas.events.training import BaseModelRef

from .conftest import publish
from .test_alerts import bare_runtime, outbox_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ENGINEER = Actor("eve", correlation_id="req-1")
TRIGGERED = "monitoring.policy.triggered"


@pytest.fixture
async def runtime(monitoring_settings):
    runtime = bare_runtime(monitoring_settings)
    yield runtime
    await runtime.db.dispose()


async def deployment(runtime: Runtime, deployment_id: str = "d1", *, model_name: str = "chat-small", project="p1"):
    async with runtime.db.transaction() as session:
        await session.execute(
            insert(deployments).values(
                deployment_id=deployment_id,
                project=project,
                name=deployment_id,
                model_version_id=f"{model_name}-v3",
                model_name=model_name,
                model_version=3,
                status="ready",
                requested_at=T0,
                updated_at=T0,
            )
        )


async def policy(runtime: Runtime, **values) -> dict:
    values = {"name": "re-evaluate", "deployment_id": "d1", "on": "drift", "action": "evaluate"} | values
    values.setdefault("suite_id", "suite-1" if values["action"] == "evaluate" else None)
    values.setdefault("cool_down_seconds", 3600)
    async with runtime.db.transaction() as session:
        return await policies.create_policy(session, runtime, project="p1", actor=ENGINEER, **values)


def drift(at: datetime, deployment_id: str = "d1", *, model_version_id: str | None = None) -> CloudEvent:
    payload = MonitoringDriftDetected(
        project="p1",
        deployment_id=deployment_id,
        model_version_id=model_version_id,
        report_id=str(uuid.uuid4()),
        reference="window",
        reference_window=Window(start=at - timedelta(hours=2), end=at - timedelta(hours=1)),
        current_window=Window(start=at - timedelta(hours=1), end=at),
        reference_rows=500,
        current_rows=500,
        drifted_share=0.6,
        threshold=0.5,
        columns=[],
        report_sha256="a" * 64,
    )
    event = new_event(payload, subject=deployment_id, source="/llmops/monitoring", project="p1", correlation_id="c-9")
    return event.model_copy(update={"time": at})


def alert(at: datetime, filters: dict[str, str]) -> CloudEvent:
    payload = MonitoringAlertFired(
        project="p1",
        rule_id="r1",
        rule="errors",
        metric="error_rate",
        filters=filters,
        value=0.5,
        threshold=0.2,
        comparison=">",
        window_seconds=600,
        for_seconds=0,
    )
    return new_event(payload, subject="r1", source="/llmops/monitoring", project="p1").model_copy(update={"time": at})


def anomaly(at: datetime) -> CloudEvent:
    payload = MonitoringAnomalyDetected(
        project="p1",
        deployment_id="d1",
        kind="refusal",
        window=Window(start=at - timedelta(minutes=5), end=at),
        flagged=30,
        records=100,
        share=0.3,
        threshold=0.1,
    )
    return new_event(payload, subject="d1", source="/llmops/monitoring", project="p1").model_copy(update={"time": at})


async def on_event(runtime: Runtime, event: CloudEvent) -> int:
    async with runtime.db.transaction() as session:
        return await policies.on_monitoring_event(session, runtime, event)


async def actions(runtime: Runtime) -> list[tuple[str, str]]:
    async with runtime.db.sessions() as session:
        rows = await session.execute(
            select(policy_actions.c.cause_event_id, policy_actions.c.outcome).order_by(policy_actions.c.created_at)
        )
        return [tuple(r) for r in rows]


class TestDriftPolicy:
    async def test_a_drift_asks_for_one_evaluation_naming_its_cause(self, runtime):
        await deployment(runtime)
        created = await policy(runtime)
        cause = drift(T0, model_version_id="mv-7")

        assert await on_event(runtime, cause) == 1
        [event] = await outbox_events(runtime, TRIGGERED)
        assert event["causationid"] == cause.id and event["correlationid"] == "c-9"
        assert event["subject"] == created["id"] and event["project"] == "p1"
        assert event["data"] == {
            "project": "p1",
            "policy_id": created["id"],
            "policy": "re-evaluate",
            "on": "drift",
            "action": "evaluate",
            "cause_event_id": cause.id,
            "cause_type": "monitoring.drift.detected",
            "deployment_id": "d1",
            "model_version_id": "mv-7",
            "suite_id": "suite-1",
            "dataset_id": None,
            "requested_by": "eve",
        }
        assert await actions(runtime) == [(cause.id, "triggered")]

    async def test_the_same_cause_delivered_twice_acts_once(self, runtime):
        await deployment(runtime)
        await policy(runtime)
        cause = drift(T0)
        assert await on_event(runtime, cause) == 1
        assert await on_event(runtime, cause) == 0
        assert len(await outbox_events(runtime, TRIGGERED)) == 1
        assert await actions(runtime) == [(cause.id, "triggered")]

    async def test_one_action_per_cool_down(self, runtime):
        await deployment(runtime)
        await policy(runtime, cool_down_seconds=3600)
        first, inside, after = drift(T0), drift(T0 + timedelta(minutes=59)), drift(T0 + timedelta(minutes=60))

        assert [await on_event(runtime, e) for e in (first, inside, after)] == [1, 0, 1]
        assert await actions(runtime) == [
            (first.id, "triggered"),
            (inside.id, "cooling_down"),
            (after.id, "triggered"),
        ]
        assert [e["causationid"] for e in await outbox_events(runtime, TRIGGERED)] == [first.id, after.id]
        async with runtime.db.sessions() as session:
            assert (await session.execute(select(policies_table.c.last_triggered_at))).scalar_one() == after.time

    async def test_a_retrain_policy_on_a_model_asks_for_one_job_with_the_deployments_model_version(self, runtime):
        await deployment(runtime, "d1", model_name="chat-small")
        await deployment(runtime, "d2", model_name="other")
        await policy(runtime, name="retrain", deployment_id=None, model_name="chat-small", action="retrain",
                     dataset_id="ds-1")  # fmt: skip

        assert await on_event(runtime, drift(T0, "d2")) == 0  # another model
        assert await on_event(runtime, drift(T0, "d1")) == 1
        [event] = await outbox_events(runtime, TRIGGERED)
        data = event["data"]
        assert (data["action"], data["dataset_id"], data["suite_id"]) == ("retrain", "ds-1", None)
        assert (data["deployment_id"], data["model_version_id"]) == ("d1", "chat-small-v3")

    async def test_a_cause_without_a_correlation_id_is_correlated_by_its_own_id(self, runtime):
        await deployment(runtime)
        await policy(runtime)
        cause = drift(T0).model_copy(update={"correlationid": None})
        await on_event(runtime, cause)
        [event] = await outbox_events(runtime, TRIGGERED)
        assert event["correlationid"] == cause.id == event["causationid"]


class TestOtherTriggers:
    async def test_a_policy_acts_only_on_its_own_trigger(self, runtime):
        await deployment(runtime)
        await policy(runtime, name="on-anomaly", on="anomaly", action="notify", suite_id=None)
        assert await on_event(runtime, drift(T0)) == 0
        assert await on_event(runtime, anomaly(T0)) == 1
        [event] = await outbox_events(runtime, TRIGGERED)
        assert (event["data"]["on"], event["data"]["action"]) == ("anomaly", "notify")

    async def test_an_alert_on_the_deployment_triggers_and_one_without_a_deployment_does_not(self, runtime):
        await deployment(runtime)
        await policy(runtime, on="alert")
        assert await on_event(runtime, alert(T0, {})) == 0  # a project-wide alert (a budget's)
        assert await on_event(runtime, alert(T0, {"deployment_id": "d2"})) == 0
        assert await on_event(runtime, alert(T0, {"deployment_id": "d1"})) == 1

    async def test_another_projects_event_triggers_nothing(self, runtime):
        await deployment(runtime)
        await policy(runtime)
        elsewhere = drift(T0).model_copy(update={"data": drift(T0).data | {"project": "p2"}})
        assert await on_event(runtime, elsewhere) == 0


class TestCausesBeforeTheirDeployment:
    """A cause about a deployment whose request the service has not seen yet (its ``deployment.requested`` late:
    dead-lettered and replayed, or the projections consumer behind) waits, and acts when the request comes."""

    @staticmethod
    def requested(deployment_id: str, model_name: str = "chat-small") -> CloudEvent:
        model = ServedModel(
            model_version_id=f"{model_name}-v4",
            name=model_name,
            version=4,
            kind="adapter",
            manifest_sha256="a" * 64,
            base_model=BaseModelRef(base_model_id="bm-1", name="tiny", source="upload", manifest_sha256="b" * 64),
        )
        payload = DeploymentRequested(
            deployment_id=deployment_id, project="p1", name=deployment_id, pool="cpu", backend="transformers",
            model=model, requested_by="eve",
        )  # fmt: skip
        return new_event(payload, subject=deployment_id, source="/llmops/deployment", project="p1")

    async def known(self, runtime: Runtime, event: CloudEvent) -> int:
        """What the projections consumer does with a request: store it, then apply what waited for it."""
        async with runtime.db.transaction() as session:
            await repository.deployment_requested(session, event, parse_payload(event))
            return await policies.deployment_known(session, runtime, event.data["deployment_id"])

    async def test_a_drift_before_its_deployments_request_acts_once_the_request_comes(self, runtime):
        await deployment(runtime, "d1", model_name="chat-small")
        await policy(runtime, name="retrain", deployment_id=None, model_name="chat-small", action="retrain",
                     dataset_id="ds-1")  # fmt: skip
        early = drift(T0, "d2")
        assert await on_event(runtime, early) == 0  # d2 is not known yet: its policies cannot be told
        assert await on_event(runtime, early) == 0  # redelivered: still one waiting
        assert await outbox_events(runtime, TRIGGERED) == []

        request = self.requested("d2")
        assert await self.known(runtime, request) == 1
        [event] = await outbox_events(runtime, TRIGGERED)
        assert event["causationid"] == early.id
        assert (event["data"]["deployment_id"], event["data"]["model_version_id"]) == ("d2", "chat-small-v4")
        assert await self.known(runtime, request) == 0  # the request redelivered: nothing waits any more
        assert await actions(runtime) == [(early.id, "triggered")]

    async def test_causes_waiting_for_a_deployment_known_only_by_its_status_act_in_event_time_order(self, runtime):
        await deployment(runtime, "d1")
        await policy(runtime, name="retrain", deployment_id=None, model_name="chat-small", action="retrain",
                     dataset_id="ds-1", cool_down_seconds=3600)  # fmt: skip
        ready = new_event(
            DeploymentReady(deployment_id="d3", project="p1", replica=0, endpoint="http://127.0.0.1:9/v1",
                            backend="transformers", served_model="m", worker="w1", attempt=1),
            subject="d3", source="/llmops/deployment", project="p1",
        )  # fmt: skip
        async with runtime.db.transaction() as session:
            await repository.deployment_status(session, ready, parse_payload(ready))
        later, first = drift(T0 + timedelta(minutes=30), "d3"), drift(T0, "d3")
        assert [await on_event(runtime, e) for e in (later, first)] == [0, 0]  # no model name known yet

        assert await self.known(runtime, self.requested("d3")) == 1
        assert await actions(runtime) == [(first.id, "triggered"), (later.id, "cooling_down")]

    async def test_a_cause_for_a_deployment_that_never_comes_is_dropped_after_the_wait(self, runtime):
        assert await on_event(runtime, drift(T0, "ghost")) == 0
        async with runtime.db.transaction() as session:
            assert await policies.drop_waiting_causes(session, datetime.now(UTC) - timedelta(hours=1)) == 0
            assert await policies.drop_waiting_causes(session, datetime.now(UTC) + timedelta(seconds=1)) == 1


class TestPolicyValidation:
    @pytest.mark.parametrize(
        ("values", "field"),
        [
            ({"deployment_id": "nope"}, "deployment_id"),
            ({"deployment_id": None, "model_name": "nope"}, "model_name"),
            ({"deployment_id": None}, "deployment_id"),
            ({"model_name": "chat-small"}, "deployment_id"),
            ({"suite_id": None}, "suite_id"),
            ({"action": "retrain", "suite_id": None}, "dataset_id"),
            ({"action": "notify", "suite_id": "suite-1"}, "suite_id"),
            ({"cool_down_seconds": -1}, "cool_down_seconds"),
        ],
    )
    async def test_an_invalid_policy_is_refused_naming_the_field(self, runtime, values, field):
        await deployment(runtime)
        with pytest.raises(Problem) as refused:
            await policy(runtime, **values)
        assert refused.value.status == 422
        assert [e["field"] for e in refused.value.extra["errors"]] == [field]

    async def test_a_deployment_of_another_project_is_unknown(self, runtime):
        await deployment(runtime, "d9", project="p2")
        with pytest.raises(Problem) as refused:
            await policy(runtime, deployment_id="d9")
        assert refused.value.status == 422


def as_record(value: bytes, offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topics.MONITORING,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"d1",
        value=value,
        checksum=None,
        serialized_key_size=2,
        serialized_value_size=len(value),
        headers=(),
    )


class TestConsumer:
    async def test_a_drift_redelivered_to_the_consumer_acts_once(self, monitoring):
        await deployment(monitoring.runtime)
        await policy(monitoring.runtime)
        cause = drift(T0)
        await monitoring.policies_consumer.process([as_record(cause.to_bytes(), 1), as_record(cause.to_bytes(), 2)])
        await monitoring.policies_consumer.process([as_record(cause.to_bytes(), 3)])
        assert await actions(monitoring.runtime) == [(cause.id, "triggered")]
        assert len(await outbox_events(monitoring.runtime, TRIGGERED)) == 1

    async def test_a_malformed_cause_is_dead_lettered_and_the_next_applied(self, monitoring):
        await deployment(monitoring.runtime)
        await policy(monitoring.runtime)
        bad = drift(T0).model_dump(mode="json")
        bad["data"]["drifted_share"] = 7
        good = drift(T0)
        await monitoring.policies_consumer.process([as_record(orjson.dumps(bad), 1), as_record(good.to_bytes(), 2)])
        assert await actions(monitoring.runtime) == [(good.id, "triggered")]
        consumer = f"{monitoring.settings.consumer_group}-policies"
        async with DeadLetterReader(client_id="tests-monitoring-dlq") as reader:
            reasons = [
                letter.reason
                async for letter in reader.scan(Selection(consumer=consumer))
                if bad["id"].encode() in letter.value
            ]
        assert reasons == ["invalid_data"]

    async def test_a_drift_published_on_kafka_triggers_its_policy(self, monitoring):
        await deployment(monitoring.runtime)
        await policy(monitoring.runtime)
        cause = drift(datetime.now(UTC))
        deadline = time.monotonic() + 90
        # the group starts at the end of the topic once it holds its partitions: publish (the same event) until then
        while not await actions(monitoring.runtime):
            assert time.monotonic() < deadline, "the policies consumer did not apply the drift"
            await publish(topics.MONITORING, [cause.to_bytes()], [b"d1"])
            await asyncio.sleep(1)
        assert await actions(monitoring.runtime) == [(cause.id, "triggered")]
