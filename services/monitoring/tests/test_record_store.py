"""The record store on the real object store and Kafka: records published with a plain Kafka client land in Parquet
files under the hive layout (date, deployment) exactly once each, even when the batch is delivered again; malformed
records go to the dead-letter topic with their reason; DuckDB reads the layout (partitions from the paths);
retention removes old partitions."""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from llmops.bus.dead_letters import DeadLetterReader, Selection
from llmops.testing import caught_up
from llmops_monitoring import metrics_store, record_store
from llmops_monitoring.metrics import merged
from llmops_monitoring.models import record_files
from llmops_monitoring.record_store import partition_value
from llmops_schemas.events.inference import MAX_LATENCY_MS, MAX_TOKENS

from . import events
from .conftest import publish
from .ingest_support import stored_rows, wait_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def wait_published(service, within: float = 30) -> list:
    deadline = time.monotonic() + within
    while True:
        async with service.runtime.db.sessions() as session:
            rows = (await session.execute(select(record_files))).all()
        if rows and all(r.published for r in rows):
            return rows
        assert time.monotonic() < deadline, "files were never published"
        await asyncio.sleep(0.1)


async def test_records_from_a_plain_kafka_client_land_in_hive_partitioned_parquet(monitoring, records_topic, tmp_path):
    yesterday = datetime.now(UTC) - timedelta(days=1)
    sent = [events.completed(deployment_id="d1") for _ in range(30)]
    sent += [events.completed(deployment_id="d2", time=yesterday) for _ in range(10)]
    sent += [events.completed(deployment_id=None, source="urn:other-gateway") for _ in range(5)]
    sent += [events.failed(deployment_id="d1") for _ in range(5)]
    await publish(records_topic, [e.to_bytes() for e in sent])
    await wait_rows(monitoring, 50)
    files = await wait_published(monitoring)

    layout = {(f.date, f.deployment) for f in files}
    today = datetime.now(UTC).date().isoformat()
    assert layout == {(today, "d1"), (yesterday.date().isoformat(), "d2"), (today, "none")}
    for f in files:
        assert f.key.startswith(f"{monitoring.settings.records_prefix}/date={f.date}/deployment={f.deployment}/")
        table = pq.read_table(io.BytesIO(await monitoring.store.get_named(f.key)))
        assert table.num_rows == f.rows
    table = await record_store.read_table(
        monitoring.runtime.db, monitoring.store, yesterday - timedelta(hours=1), datetime.now(UTC) + timedelta(1)
    )
    assert sorted(table.column("event_id").to_pylist()) == sorted(e.id for e in sent)
    external = [r for r in table.to_pylist() if r["source"] == "urn:other-gateway"]
    assert len(external) == 5 and {r["deployment_id"] for r in external} == {None}
    failures = [r for r in table.to_pylist() if r["outcome"] == "failed"]
    assert {r["status"] for r in failures} == {502}

    # the layout as a query engine sees it: DuckDB over a copy of the published files, partitions from the paths
    import duckdb

    for f in files:
        copy = tmp_path / f.key
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(await monitoring.store.get_named(f.key))
    counted = duckdb.execute(
        "SELECT CAST(date AS VARCHAR), deployment, count(*), count(DISTINCT event_id)"
        " FROM read_parquet(?, hive_partitioning = true) GROUP BY ALL ORDER BY 2",
        [f"{tmp_path / monitoring.settings.records_prefix}/**/*.parquet"],
    ).fetchall()
    assert counted == [
        (today, "d1", 35, 35),
        (yesterday.date().isoformat(), "d2", 10, 10),
        (today, "none", 5, 5),
    ]


async def recent_hours(monitoring, **filters):
    """Project p1's hour buckets around now (``filters`` on their dimensions), merged into one."""
    async with monitoring.runtime.db.sessions() as session:
        buckets = await metrics_store.read_buckets(
            session,
            project="p1",
            start=datetime.now(UTC) - timedelta(hours=2),
            end=datetime.now(UTC) + timedelta(hours=1),
            resolution="hour",
            filters=filters,
            limit=100,
        )
    return merged(bucket for _, bucket in buckets)


async def test_a_redelivered_batch_is_stored_once(monitoring, records_topic):
    sent = [events.completed() for _ in range(20)]
    await publish(records_topic, [e.to_bytes() for e in sent])
    await wait_rows(monitoring, 20)
    await publish(records_topic, [e.to_bytes() for e in sent])  # the same events again (a producer's retry)
    await caught_up(monitoring.settings.records_group, monitoring.settings.records_topics)
    assert await stored_rows(monitoring) == 20
    assert (await recent_hours(monitoring)).requests == 20  # counted once in the metrics too, at each resolution


async def test_malformed_records_go_to_the_dead_letter_topic_with_their_reason(monitoring, records_topic):
    good = events.completed()
    bad_data = json.loads(events.completed().to_bytes())
    bad_data["data"]["latency_ms"] = -5
    unknown = json.loads(events.completed().to_bytes())
    unknown["type"] = "inference.exploded"
    await publish(records_topic, [b"not json", json.dumps(bad_data).encode(), json.dumps(unknown).encode()])
    await publish(records_topic, [good.to_bytes()])
    await wait_rows(monitoring, 1)
    await caught_up(monitoring.settings.records_group, monitoring.settings.records_topics)
    async with DeadLetterReader(client_id="tests-monitoring-dlq") as reader:
        letters = [letter async for letter in reader.scan(Selection(consumer=monitoring.settings.records_group))]
    reasons = {letter.value: letter.reason for letter in letters}
    assert reasons[b"not json"] == "not_json"
    assert reasons[json.dumps(bad_data).encode()] == "invalid_data"
    assert reasons[json.dumps(unknown).encode()] == "unknown_type"
    assert await stored_rows(monitoring) == 1


async def test_values_past_the_schemas_bounds_are_dead_lettered_and_those_at_them_sum_finitely(
    monitoring, records_topic
):
    """A latency, cost or token count past the event schema's bounds would make a bucket's sums overflow (an infinite
    float, which JSONB refuses, or an int64 sum wrapping round) for every later record of that bucket: such records
    go to the dead-letter topic; those at the bounds are counted, with finite and exact sums."""
    past = []
    for field, value in (
        ("latency_ms", 1e308),
        ("time_to_first_token_ms", 1e308),
        ("cost", 1e308),
        ("tokens_out", 2**62),
    ):
        data = json.loads(events.completed().to_bytes())
        data["data"][field] = value
        past.append(json.dumps(data).encode())
    at_bounds = [
        events.completed(latency_ms=MAX_LATENCY_MS, tokens_in=MAX_TOKENS, tokens_out=MAX_TOKENS) for _ in range(3)
    ]
    await publish(records_topic, [*past, *(e.to_bytes() for e in at_bounds)])
    await wait_rows(monitoring, 3)
    await caught_up(monitoring.settings.records_group, monitoring.settings.records_topics)
    async with DeadLetterReader(client_id="tests-monitoring-dlq") as reader:
        letters = [letter async for letter in reader.scan(Selection(consumer=monitoring.settings.records_group))]
    reasons = {letter.value: (letter.reason, letter.error) for letter in letters}
    for value, field in zip(past, ("latency_ms", "time_to_first_token_ms", "cost", "tokens_out"), strict=True):
        assert reasons[value][0] == "invalid_data" and field in reasons[value][1]
    bucket = await recent_hours(monitoring, user="u1")
    assert bucket.requests == 3 and bucket.tokens_out == bucket.tokens_in == 3 * MAX_TOKENS
    assert bucket.output_tokens_seconds == 3 * MAX_LATENCY_MS / 1000 and math.isfinite(bucket.cost)


async def test_retention_removes_old_partitions_and_their_files(monitoring, records_topic):
    old = datetime.now(UTC) - timedelta(days=40)
    await publish(records_topic, [events.completed(time=old).to_bytes(), events.completed().to_bytes()])
    await wait_rows(monitoring, 2)
    files = await wait_published(monitoring)
    [old_file] = [f for f in files if f.date == old.date().isoformat()]
    removed = await record_store.apply_retention(monitoring.runtime.db, monitoring.store, days=30)
    assert removed == 1
    assert await stored_rows(monitoring) == 1
    listed = {key for key, _, _ in await monitoring.store.list_named(monitoring.settings.records_prefix + "/")}
    assert old_file.key not in listed and len(listed) == 1


async def test_staged_files_no_transaction_registered_are_swept(monitoring):
    prefix = monitoring.settings.records_prefix
    [orphan] = await record_store.stage(monitoring.store, prefix, [_record()])
    assert await record_store.sweep_staging(monitoring.runtime.db, monitoring.store, prefix, older_than=timedelta(0))
    assert orphan.staging_key not in {k for k, _, _ in await monitoring.store.list_named(prefix + "/")}


def test_a_deployment_id_is_one_safe_path_segment():
    assert partition_value("d1") == "d1"
    assert partition_value(None) == "none"
    assert partition_value("../../etc") == "%2E.%2F..%2Fetc"
    assert "/" not in partition_value("a/b") and partition_value(".hidden").startswith("%2E")


def _record() -> dict:
    from llmops_monitoring.records import record_of

    event = events.completed()
    from llmops_schemas import parse_payload

    return record_of(event, parse_payload(event))


async def test_the_records_api_pages_the_newest_and_refuses_a_range_past_its_bound(client, monitoring, records_topic):
    from .conftest import ENGINEER

    sent = [events.completed(deployment_id="d1") for _ in range(30)]
    await publish(records_topic, [e.to_bytes() for e in sent])
    await wait_rows(monitoring, 30)
    answer = await client.get("/projects/p1/monitoring/records?deployment_id=d1&limit=5", headers=ENGINEER)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    newest = sorted(sent, key=lambda e: (e.time, e.id))[-5:]
    assert body["total"] == 30 and [r["event_id"] for r in body["records"]] == [e.id for e in newest]

    monitoring.settings.max_read_records = 29  # the manifest counts 30: refused before any file is read
    answer = await client.get("/projects/p1/monitoring/records?deployment_id=d1", headers=ENGINEER)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "start" and "more than 29" in answer.json()["detail"]
