"""``feedback.submitted`` from outside, on real Kafka: a CloudEvent built by hand (as another system would publish
it) counts once however often it arrives; a malformed one goes to the dead-letter topic with its reason; the
service's own event (given through the API) is not counted twice."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from llmops import testing
from llmops.auth import Role
from llmops.bus.dead_letters import DeadLetterReader, Selection
from llmops.settings import KafkaSettings
from llmops.testing import caught_up

pytestmark = pytest.mark.integration
BOOTSTRAP = KafkaSettings().bootstrap_servers
TOPIC = "llmops.feedback"


@pytest.fixture
def offset_reset() -> str:
    return "earliest"  # the consumer must see what is published while it joins its group


@pytest.fixture
def project() -> str:
    return f"fb-{uuid.uuid4().hex[:10]}"


def outside_event(project: str, **data) -> dict:
    """A feedback.submitted CloudEvent as a plain JSON object, the way a system outside the platform builds it."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/acme/chat-frontend",
        "type": "feedback.submitted",
        "subject": "inf-42",
        "time": "2026-11-30T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"project": project, "inference_id": "inf-42", "model_version_id": "mv-1"} | data,
    }


async def publish(*events: dict) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(TOPIC, json.dumps(event).encode(), key=event["subject"].encode())
    finally:
        await producer.stop()


async def summary(client, project: str) -> list[dict]:
    headers = testing.bearer(Role.VIEWER, projects=(project,))
    response = await client.get(f"/projects/{project}/evaluation/feedback/summary", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def eventually_counted(client, project: str, count: int, within: float = 90) -> list[dict]:
    deadline = time.monotonic() + within
    while (found := await summary(client, project)) == [] or found[0]["count"] < count:
        assert time.monotonic() < deadline, f"feedback not counted: {found}"
        await asyncio.sleep(0.2)
    return found


class TestOutsideFeedback:
    async def test_an_event_published_twice_is_counted_once(self, evaluation, client, project):
        event = outside_event(project, rating=4, thumb="up", correction="Paris.", input="Capital of France?")
        await publish(event, event)
        await eventually_counted(client, project, 1)
        await caught_up(evaluation.feedback_consumer.group_id, [TOPIC])  # the second copy has been read too
        [figures] = await summary(client, project)
        assert figures["count"] == 1
        assert figures["rating"]["n"] == 1 and figures["thumbs_up"] == 1 and figures["corrections"] == 1

    async def test_the_stored_feedback_keeps_the_events_id_source_and_time(self, evaluation, client, project):
        event = outside_event(project, thumb="down", source="acme-chat")
        await publish(event)
        await eventually_counted(client, project, 1)
        headers = testing.bearer(Role.VIEWER, projects=(project,))
        [stored] = (await client.get(f"/projects/{project}/evaluation/feedback", headers=headers)).json()
        assert (stored["id"], stored["source"], stored["thumb"]) == (event["id"], "acme-chat", "down")
        assert stored["submitted_at"].startswith("2026-11-30T12:00:00")

    async def test_a_malformed_event_goes_to_the_dead_letter_topic_with_its_reason(self, evaluation, client, project):
        bad = outside_event(project, rating=9)
        good = outside_event(project, rating=2)
        await publish(bad, good)
        await eventually_counted(client, project, 1)
        consumer = evaluation.feedback_consumer.name
        deadline = time.monotonic() + 90
        while not (ours := [letter for letter in await dead_letters(consumer) if bad["id"].encode() in letter.value]):
            assert time.monotonic() < deadline, "the malformed event was not dead-lettered"
            await asyncio.sleep(0.5)
        assert [letter.reason for letter in ours] == ["invalid_data"]
        assert "rating" in (ours[0].error or "")
        [figures] = await summary(client, project)
        assert figures["count"] == 1 and figures["rating"]["mean"] == 2.0


class TestOwnFeedback:
    async def test_feedback_given_through_the_api_is_not_counted_again_by_the_consumer(
        self, evaluation, client, project
    ):
        # A project of its own: this group reads the topic from its start, other runs' feedback included.
        engineer = testing.bearer(Role.ML_ENGINEER, projects=(project,))
        body = {"rating": 5, "model_version_id": "mv-own"}
        response = await client.post(f"/projects/{project}/evaluation/feedback", json=body, headers=engineer)
        assert response.status_code == 201, response.text
        deadline = time.monotonic() + 60
        while not await published(evaluation):  # the relay has sent it: the consumer will read it back
            assert time.monotonic() < deadline, "the outbox relay did not publish the feedback"
            await asyncio.sleep(0.1)
        await caught_up(evaluation.feedback_consumer.group_id, [TOPIC])
        [figures] = await summary(client, project)
        assert figures["count"] == 1


async def published(evaluation) -> bool:
    from sqlalchemy import text

    async with evaluation.runtime.db.sessions() as session:
        query = text("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
        return (await session.execute(query)).scalar_one() > 0


async def dead_letters(consumer: str) -> list:
    """Every dead letter of ``consumer``, read to the topic's end."""
    async with DeadLetterReader(client_id="tests-evaluation-dlq") as reader:
        return [letter async for letter in reader.scan(Selection(consumer=consumer))]
