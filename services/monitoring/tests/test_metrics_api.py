"""Metrics through the service: records published on Kafka are counted into buckets, and the API's percentiles and
counts equal numpy's on the same records (percentiles within the sketch's 1 % relative error); filters, groups and
steps; feedback on a request lands in its bucket; the Prometheus exposition; bad ranges are 422 naming the field."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from llmops_monitoring.models import pending_feedback
from llmops_schemas import new_event
from llmops_schemas.events import FeedbackSubmitted

from . import events
from .conftest import ENGINEER, VIEWER, publish
from .ingest_support import wait_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def within_sketch_error(value: float, values: np.ndarray, q: float) -> bool:
    """DDSketch answers within 1 % of the value at the rank it reads (numpy's ``lower`` method at that rank)."""
    truth = np.quantile(values, q, method="lower")
    return abs(value - truth) <= 0.01 * truth * (1 + 1e-9)


async def test_percentiles_and_counts_equal_numpy_on_the_same_records(client, monitoring, records_topic):
    rng = np.random.default_rng(7)
    latencies = {d: rng.lognormal(5 + i, 0.6, 400) for i, d in enumerate(("d1", "d2"))}
    sent = [
        events.completed(deployment_id=d, latency_ms=float(v), tokens_in=10 + j % 7, tokens_out=5 + j % 11)
        for d, values in latencies.items()
        for j, v in enumerate(values)
    ]
    failures = [events.failed(deployment_id="d1", status=s) for s in (502, 502, 503)]
    await publish(records_topic, [e.to_bytes() for e in sent + failures])
    await wait_rows(monitoring, len(sent) + len(failures))

    answer = await client.get("/projects/p1/monitoring/metrics", params={"group_by": "deployment_id"}, headers=VIEWER)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["resolution"] == "minute"
    groups = {g["deployment_id"]: g for g in body["groups"]}
    d1_all = np.concatenate([latencies["d1"], [30.0, 30.0, 30.0]])  # failed records are timed too
    for deployment, values in (("d1", d1_all), ("d2", latencies["d2"])):
        group = groups[deployment]
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert within_sketch_error(group["latency_ms"][name], values, q), (deployment, name)
        assert group["requests"] == len(values)
    assert groups["d1"]["errors"] == 3 and groups["d1"]["errors_by_kind"] == {"http_502": 2, "http_503": 1}
    assert groups["d2"]["tokens_in"] == sum(10 + j % 7 for j in range(400))
    assert groups["d2"]["tokens_out"] == sum(5 + j % 11 for j in range(400))
    assert groups["d2"]["cost"] == pytest.approx(sum(0.0001 * (10 + j % 7 + 5 + j % 11) for j in range(400)))

    only_d2 = (await client.get("/projects/p1/monitoring/metrics?deployment_id=d2", headers=VIEWER)).json()
    assert [g["requests"] for g in only_d2["groups"]] == [400]
    series = (await client.get("/projects/p1/monitoring/metrics?step=true", headers=VIEWER)).json()
    assert sum(g["requests"] for g in series["groups"]) == 803 and all("start" in g for g in series["groups"])
    hourly = (await client.get("/projects/p1/monitoring/metrics?resolution=hour", headers=VIEWER)).json()
    assert sum(g["requests"] for g in hourly["groups"]) == 803
    # per user: the counts of each user's records (the failures name none), without percentiles
    users = (await client.get("/projects/p1/monitoring/metrics?group_by=user", headers=VIEWER)).json()["groups"]
    assert [(g["user"], g["requests"], g["latency_ms"]["p50"]) for g in users] == [("u1", 800, None)]
    assert users[0]["tokens_out"] == groups["d1"]["tokens_out"] + groups["d2"]["tokens_out"]


async def test_feedback_on_a_request_lands_in_its_bucket(client, monitoring, records_topic):
    served = events.completed(deployment_id="d9")
    await publish(records_topic, [served.to_bytes()])
    await wait_rows(monitoring, 1)
    for rating in (5, 3):
        feedback = new_event(
            FeedbackSubmitted(project="p1", rating=rating, inference_id=served.data["request_id"]),
            subject=served.data["request_id"],
            source="urn:chat-frontend",
            project="p1",
        )
        await monitoring.consumer.process([_record(feedback)])
    groups = (await client.get("/projects/p1/monitoring/metrics?deployment_id=d9", headers=VIEWER)).json()["groups"]
    assert groups[0]["feedback_count"] == 2 and groups[0]["feedback_mean"] == 4


def feedback_on(request_id: str | None, rating: int, **fields):
    return new_event(
        FeedbackSubmitted(project="p1", rating=rating, inference_id=request_id, **fields),
        subject=request_id or "mv-x",
        source="urn:chat-frontend",
        project="p1",
    )


async def feedback_groups(client, **params) -> list[dict]:
    answer = await client.get("/projects/p1/monitoring/metrics", params=params, headers=VIEWER)
    assert answer.status_code == 200, answer.text
    return answer.json()["groups"]


async def pending(monitoring) -> int:
    async with monitoring.runtime.db.sessions() as session:
        return (await session.execute(select(func.count()).select_from(pending_feedback))).scalar_one()


async def test_feedback_before_its_record_waits_for_it_and_lands_in_its_bucket(client, monitoring, records_topic):
    """The feedback consumer may see feedback before the records consumer has ingested its record: it waits, and
    the record's ingest counts it under the record's dimensions, once (redelivered feedback adds nothing)."""
    served = events.completed(deployment_id="d8", user="u8")
    feedbacks = [feedback_on(served.data["request_id"], rating) for rating in (5, 2)]
    for feedback in feedbacks:
        await monitoring.consumer.process([_record(feedback)])
    assert await pending(monitoring) == 2
    assert not any(g["feedback_count"] for g in await feedback_groups(client))

    await publish(records_topic, [served.to_bytes()])
    await wait_rows(monitoring, 1)
    assert await pending(monitoring) == 0
    await monitoring.consumer.process([_record(f) for f in feedbacks])  # redelivered
    [group] = await feedback_groups(client, deployment_id="d8")
    assert (group["feedback_count"], group["feedback_mean"]) == (2, 3.5)
    [user] = await feedback_groups(client, group_by="user", user="u8")
    assert user["feedback_count"] == 2
    [hour] = await feedback_groups(client, deployment_id="d8", resolution="hour")
    assert hour["feedback_count"] == 2


async def test_feedback_that_raced_its_record_or_never_finds_it_is_settled_by_maintenance(client, monitoring):
    """Feedback parked while its record's ingest was committing (the ingest did not see it) is counted at the next
    maintenance pass under the record's dimensions; feedback whose record never comes counts, after the wait, under
    the model version it names, or is dropped without one."""
    served = events.completed(deployment_id="d7")
    await publish(monitoring.settings.records_topics[0], [served.to_bytes()])
    await wait_rows(monitoring, 1)
    raced = feedback_on(served.data["request_id"], 4)
    lost_with_version = feedback_on("never-served-1", 1, model_version_id="mv-lost")
    lost_without = feedback_on("never-served-2", 5)
    async with monitoring.runtime.db.transaction() as session:  # parked as by a feedback consumer that raced
        await session.execute(
            insert(pending_feedback).values(
                event_id=raced.id, project="p1", request_id=served.data["request_id"], rating=4, time=raced.time
            )
        )
    for feedback in (lost_with_version, lost_without):
        await monitoring.consumer.process([_record(feedback)])
    assert await pending(monitoring) == 3

    await monitoring.settle_feedback()  # the raced one: its record is there
    assert await pending(monitoring) == 2
    [group] = await feedback_groups(client, deployment_id="d7")
    assert (group["feedback_count"], group["feedback_mean"]) == (1, 4)

    monitoring.settings.feedback_wait_seconds = 0  # the others have waited long enough
    await monitoring.settle_feedback()
    assert await pending(monitoring) == 0
    [lost] = await feedback_groups(client, model_version_id="mv-lost")
    assert (lost["feedback_count"], lost["feedback_mean"]) == (1, 1)
    everything = await feedback_groups(client)
    assert sum(g["feedback_count"] for g in everything) == 2  # the one without a version was dropped


async def test_the_inference_metrics_are_in_the_prometheus_exposition(client, monitoring, records_topic):
    await publish(records_topic, [events.completed(deployment_id="dp").to_bytes() for _ in range(5)])
    await wait_rows(monitoring, 5)
    text = (await client.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [sample] = [s for s in families["llmops_inference_requests"].samples if s.labels.get("deployment") == "dp"]
    assert sample.value == 5 and sample.labels["project"] == "p1"


class TestBadInput:
    async def test_a_range_older_than_the_retention_is_422_naming_start(self, client):
        old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
        answer = await client.get("/projects/p1/monitoring/metrics", params={"start": old}, headers=VIEWER)
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "start"

    async def test_an_empty_range_is_422(self, client):
        now = datetime.now(UTC).isoformat()
        answer = await client.get("/projects/p1/monitoring/metrics", params={"start": now, "end": now}, headers=VIEWER)
        assert answer.status_code == 422

    async def test_an_unknown_group_is_422_naming_group_by(self, client):
        answer = await client.get("/projects/p1/monitoring/metrics?group_by=colour", headers=VIEWER)
        assert answer.status_code == 422 and "group_by" in answer.text

    async def test_another_project_is_403_and_no_token_401(self, client):
        assert (await client.get("/projects/p2/monitoring/metrics", headers=ENGINEER)).status_code == 403
        assert (await client.get("/projects/p1/monitoring/metrics")).status_code == 401


def _record(event):
    from aiokafka import ConsumerRecord

    value = event.to_bytes()
    return ConsumerRecord(
        topic="test",
        partition=0,
        offset=int(time.monotonic_ns() % 10**9),
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=[],
    )
