"""The dead-letter admin API on real Kafka and Postgres: who may call it, what it lists, shows and replays."""

from __future__ import annotations

import json
import time
import uuid
from functools import partial

import httpx
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy import select

from llmops import testing
from llmops.auth import Role
from llmops.bus import DeadLetterPublisher, make_admin, make_broker, make_consumer
from llmops.bus.tables import outbox
from llmops.errors import PROBLEM_JSON
from llmops.testing import caught_up
from llmops_schemas.topics import DEAD_LETTER, PLATFORM

from .conftest import probes, wait_for_head

pytestmark = pytest.mark.integration


bearer = partial(testing.bearer, projects=("*",), subject="tester")


ADMIN = bearer(Role.ADMIN, subject="root")


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    return response.json()


@pytest.fixture
async def client(audit):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit.app), base_url="http://test") as client:
        yield client


@pytest.fixture
async def outage(topics):
    """Dead-letters events of the audit consumer's first topic as the consumer did while Postgres was down: they
    never reached the audit log. Returns a function taking the events and a reason; the consumer is this test's."""
    consumer = f"audit-outage-{uuid.uuid4().hex[:8]}"
    broker = make_broker(client_id=consumer)
    await broker.start()
    publisher = DeadLetterPublisher(broker, consumer=consumer)
    offsets = iter(range(10**6))

    async def dead_letter(events, *, reason: str = "handler_failed") -> str:
        for event in events:
            value, key = event.to_bytes(), event.subject.encode()
            record = ConsumerRecord(
                topics[0], 0, next(offsets), int(time.time() * 1000), 0, key, value, None, len(key), len(value), []
            )
            await publisher.publish(record, reason=reason, error="ConnectionRefusedError(111)", attempts=3)
        return consumer

    yield dead_letter
    await broker.stop()


async def logged_ids(client) -> list[str]:
    """The ids of the events in the audit log, read through its API."""
    response = await client.get("/audit/events", params={"limit": 1000}, headers=bearer(Role.AUDITOR))
    assert response.status_code == 200, response.text
    return [entry["event_id"] for entry in response.json()["items"]]


async def published_count(topic: str) -> int:
    admin, probe = make_admin(client_id="tests-count"), make_consumer(client_id="tests-count")
    await admin.start()
    await probe.start()
    try:
        described = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for t in described for p in t["partitions"]]
        return sum((await probe.end_offsets(partitions)).values())
    finally:
        await probe.stop()
        await admin.close()


async def replay_events(db) -> list[dict]:
    async with db.sessions() as session:
        rows = (await session.execute(select(outbox.c.topic, outbox.c.payload))).all()
    events = [(topic, json.loads(payload)) for topic, payload in rows]
    return [event for topic, event in events if event["type"] == "platform.dead_letters.replayed" and topic == PLATFORM]


async def listed(client, **query) -> list[dict]:
    response = await client.get("/admin/dead-letters", params=query, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["items"]


ROUTES = [
    pytest.param("GET", "/admin/dead-letters", None, id="list"),
    pytest.param("GET", "/admin/dead-letters/0-0", None, id="show"),
    pytest.param("POST", "/admin/dead-letters/replay", {"all": True, "dry_run": True}, id="replay"),
]


class TestRoles:
    async def test_admins_of_every_project_are_served(self, client, outage):
        consumer = await outage(probes(1))
        (letter,) = await listed(client, consumer=consumer)
        assert (await client.get(f"/admin/dead-letters/{letter['id']}", headers=ADMIN)).status_code == 200
        body = {"ids": [letter["id"]], "dry_run": True}
        assert (await client.post("/admin/dead-letters/replay", json=body, headers=ADMIN)).status_code == 200

    @pytest.mark.parametrize("role", [Role.AUDITOR, Role.ML_ENGINEER, Role.DATA_STEWARD, Role.VIEWER])
    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    async def test_every_other_role_is_refused_with_403(self, client, method, path, body, role):
        response = await client.request(method, path, json=body, headers=bearer(role))
        assert assert_problem(response, 403)["type"] == "urn:llmops:problem:missing_role"

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    async def test_an_admin_of_some_projects_only_is_refused_with_403(self, client, method, path, body):
        response = await client.request(method, path, json=body, headers=bearer(Role.ADMIN, projects=("p1",)))
        assert assert_problem(response, 403)["type"] == "urn:llmops:problem:wrong_project"

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    async def test_a_request_without_a_token_is_refused_with_401(self, client, method, path, body):
        response = await client.request(method, path, json=body)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_a_refusal_is_recorded_as_a_security_event(self, audit, client):
        request_id = f"req-{uuid.uuid4().hex}"
        headers = bearer(Role.AUDITOR) | {"x-request-id": request_id}
        assert_problem(await client.get("/admin/dead-letters", headers=headers), 403)
        async with audit.runtime.db.sessions() as session:
            payloads = [json.loads(p) for p in (await session.execute(select(outbox.c.payload))).scalars()]
        (denial,) = [e for e in payloads if e["data"].get("request_id") == request_id]
        assert denial["data"]["permission"] == "dead_letters.read"


class TestBadInput:
    @pytest.mark.parametrize(
        ("path", "query", "field"),
        [
            pytest.param("/admin/dead-letters", {"limit": 0}, "limit", id="limit-0"),
            pytest.param("/admin/dead-letters", {"limit": 501}, "limit", id="limit-501"),
            pytest.param("/admin/dead-letters", {"cursor": "page-2"}, "cursor", id="cursor-not-an-id"),
            pytest.param("/admin/dead-letters", {"from_time": "yesterday"}, "from_time", id="from_time-not-a-date"),
            pytest.param(
                "/admin/dead-letters",
                {"from_time": "2026-06-02T00:00:00Z", "to_time": "2026-06-01T00:00:00Z"},
                "to_time",
                id="to_time-before-from_time",
            ),
            pytest.param("/admin/dead-letters", {"colour": "red"}, "colour", id="unknown-parameter"),
            pytest.param("/admin/dead-letters", {"reason": "x" * 129}, "reason", id="reason-too-long"),
            pytest.param("/admin/dead-letters/0-x", {}, "letter_id", id="show-id-not-partition-offset"),
            pytest.param("/admin/dead-letters/0-0", {"preview_bytes": 70000}, "preview_bytes", id="preview-too-big"),
        ],
    )
    async def test_a_query_is_refused_with_a_422_problem_naming_the_field(self, client, path, query, field):
        problem = assert_problem(await client.get(path, params=query, headers=ADMIN), 422)
        assert field in [error["field"] for error in problem["errors"]]

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({}, id="no-selector"),
            pytest.param({"dry_run": True}, id="only-dry-run"),
            pytest.param({"ids": []}, id="no-ids"),
            pytest.param({"ids": ["0:5"]}, id="id-with-a-colon"),
            pytest.param({"filter": {}}, id="empty-filter"),
            pytest.param({"ids": ["0-5"], "all": True}, id="two-selectors"),
            pytest.param({"filter": {"colour": "red"}}, id="unknown-filter-field"),
            pytest.param({"ids": [f"0-{i}" for i in range(1001)]}, id="too-many-ids"),
        ],
    )
    async def test_a_replay_without_exactly_one_valid_selector_is_refused_with_422(self, client, body):
        assert_problem(await client.post("/admin/dead-letters/replay", json=body, headers=ADMIN), 422)


class TestList:
    async def test_lists_the_dead_letters_of_a_consumer_with_their_reasons(self, client, outage, topics):
        consumer = await outage(probes(3))
        await outage(probes(2, start=10), reason="invalid_data")
        items = await listed(client, consumer=consumer)
        assert sorted(item["reason"] for item in items) == ["handler_failed"] * 3 + ["invalid_data"] * 2
        assert {(item["topic"], item["attempts"], item["error"]) for item in items} == {
            (topics[0], 3, "ConnectionRefusedError(111)")
        }

    async def test_filters_by_reason_and_topic(self, client, outage, topics):
        consumer = await outage(probes(3))
        await outage(probes(2, start=10), reason="invalid_data")
        assert len(await listed(client, consumer=consumer, reason="invalid_data")) == 2
        assert len(await listed(client, consumer=consumer, topic=topics[0])) == 5
        assert await listed(client, consumer=consumer, topic=topics[1]) == []

    async def test_filters_by_the_time_they_were_dead_lettered(self, client, outage):
        consumer = await outage(probes(2))
        items = await listed(client, consumer=consumer)
        latest = max(item["time"] for item in items)
        assert [item["time"] for item in await listed(client, consumer=consumer, from_time=latest)] == [latest]
        assert latest not in [item["time"] for item in await listed(client, consumer=consumer, to_time=latest)]

    async def test_pages_are_bounded_and_follow_the_cursor(self, client, outage):
        consumer = await outage(probes(5))
        seen, cursor = [], None
        while True:
            query = {"consumer": consumer, "limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/admin/dead-letters", params=query, headers=ADMIN)).json()
            assert len(page["items"]) <= 2
            seen += [item["id"] for item in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert len(seen) == len(set(seen)) == 5


class TestShow:
    async def test_shows_the_headers_and_a_bounded_preview_of_the_value(self, client, outage, topics):
        events = probes(1)
        consumer = await outage(events)
        (letter,) = await listed(client, consumer=consumer)
        response = await client.get(f"/admin/dead-letters/{letter['id']}?preview_bytes=20", headers=ADMIN)
        assert response.status_code == 200, response.text
        detail = response.json()
        assert detail["headers"]["x-dlq-topic"] == topics[0]
        assert detail["headers"]["x-dlq-consumer"] == consumer
        assert (detail["value_preview"], detail["value_encoding"]) == (events[0].to_bytes()[:20].decode(), "utf-8")
        assert detail["value_truncated"] is True
        assert detail["size"] == len(events[0].to_bytes())

    async def test_an_offset_the_topic_does_not_hold_is_404(self, client):
        assert_problem(await client.get(f"/admin/dead-letters/0-{10**15}", headers=ADMIN), 404)


class TestReplay:
    async def test_events_dead_lettered_during_an_outage_enter_the_audit_log_once(self, audit, client, outage, topics):
        events = probes(6, subjects=2)
        consumer = await outage(events)
        body = {"filter": {"consumer": consumer}}

        first = await client.post("/admin/dead-letters/replay", json=body, headers=ADMIN)
        assert first.status_code == 200, first.text
        assert (first.json()["count"], first.json()["topics"]) == (6, {topics[0]: 6})
        await wait_for_head(audit.runtime.db, 6)
        assert sorted(await logged_ids(client)) == sorted(e.id for e in events)

        again = await client.post("/admin/dead-letters/replay", json=body, headers=ADMIN)
        assert again.json()["count"] == 6
        await caught_up(audit.settings.consumer_group, topics)
        assert sorted(await logged_ids(client)) == sorted(e.id for e in events)

    async def test_a_replay_is_recorded_with_who_how_many_and_which(self, audit, client, outage, topics):
        consumer = await outage(probes(2))
        ids = sorted(item["id"] for item in await listed(client, consumer=consumer))
        response = await client.post("/admin/dead-letters/replay", json={"ids": ids}, headers=ADMIN)
        assert response.status_code == 200, response.text

        (event,) = await replay_events(audit.runtime.db)
        assert event["id"] == response.json()["event_id"]
        assert (event["actor"], event["subject"]) == ("root", DEAD_LETTER)
        assert event["data"] | {"ids": sorted(event["data"]["ids"])} == {
            "count": 2,
            "topics": {topics[0]: 2},
            "ids": ids,
            "ids_truncated": False,
            "skipped": 0,
            "selector": "ids",
            "reason": None,
            "consumer": None,
            "original_topic": None,
            "from_time": None,
            "to_time": None,
        }

    async def test_a_dry_run_counts_and_publishes_nothing(self, audit, client, outage, topics):
        consumer = await outage(probes(3))
        body = {"filter": {"consumer": consumer}, "dry_run": True}
        response = await client.post("/admin/dead-letters/replay", json=body, headers=ADMIN)
        assert (response.json()["count"], response.json()["dry_run"], response.json()["event_id"]) == (3, True, None)
        assert await published_count(topics[0]) == 0
        assert await replay_events(audit.runtime.db) == []

    async def test_an_id_the_topic_does_not_hold_refuses_the_whole_replay(self, audit, client, outage, topics):
        consumer = await outage(probes(1))
        (letter,) = await listed(client, consumer=consumer)
        body = {"ids": [letter["id"], f"0-{10**15}"]}
        problem = assert_problem(await client.post("/admin/dead-letters/replay", json=body, headers=ADMIN), 404)
        assert problem["missing"] == [f"0-{10**15}"]
        assert await published_count(topics[0]) == 0
