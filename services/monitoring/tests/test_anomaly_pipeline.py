"""Unusual outputs through the service: records published on Kafka are flagged as they are stored (the flags are in
the Parquet records and the metrics), counted per window, and a closed window whose share of a kind passes its
threshold publishes one ``monitoring.anomaly.detected`` (grouped: one per deployment and kind, with examples), never
twice for the same window, and not again for the same kind within the throttle period."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from llmops.bus import outbox
from llmops_monitoring import record_store

from . import events
from .conftest import VIEWER, publish
from .ingest_support import wait_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def anomaly_events(service) -> list[dict]:
    async with service.runtime.db.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
    return [e for e in map(json.loads, payloads) if e["type"] == "monitoring.anomaly.detected"]


def window_start(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


async def test_a_window_with_too_many_empty_answers_is_announced_once(client, monitoring, records_topic):
    seconds = monitoring.settings.anomaly_window_seconds
    first = window_start(datetime.now(UTC) - timedelta(hours=3), seconds)
    second = first + timedelta(seconds=seconds)

    def window(start: datetime, empties: int) -> list:
        sent = []
        for i in range(40):
            empty = i < empties
            sent.append(
                events.completed(
                    deployment_id="d1",
                    time=start + timedelta(seconds=i),
                    output="" if empty else "Paris is the capital of France.",
                    tokens_out=0 if empty else 8,
                )
            )
        return sent

    sent = window(first, 10) + window(second, 12) + [events.completed(deployment_id="d2", time=first)]
    await publish(records_topic, [e.to_bytes() for e in sent])
    await wait_rows(monitoring, len(sent))

    table = await record_store.read_table(
        monitoring.runtime.db, monitoring.store, first, second + timedelta(seconds=seconds), deployment_id="d1"
    )
    flagged = [r for r in table.to_pylist() if "empty" in r["flags"]]
    assert len(flagged) == 22
    counted = (
        await client.get("/projects/p1/monitoring/anomalies", params={"start": first.isoformat()}, headers=VIEWER)
    ).json()
    by_window = {(w["deployment_id"], w["window_start"][:19]): w for w in counted["windows"]}
    assert by_window[("d1", first.isoformat()[:19])]["flags"]["empty"]["count"] == 10
    assert by_window[("d1", first.isoformat()[:19])]["records"] == 40

    assert await monitoring.assess_anomalies() == 1  # the second window is inside the throttle period
    assert await monitoring.assess_anomalies() == 0  # assessed windows are not assessed again
    [event] = await anomaly_events(monitoring)
    data = event["data"]
    assert (data["deployment_id"], data["kind"], data["flagged"], data["records"]) == ("d1", "empty", 10, 40)
    assert data["share"] == 0.25 and data["threshold"] == 0.05 and len(data["examples"]) == 5
    assert data["window"]["start"].startswith(first.isoformat()[:19])
    metrics = (
        await client.get(
            "/projects/p1/monitoring/metrics",
            params={"start": first.isoformat(), "resolution": "hour", "deployment_id": "d1"},
            headers=VIEWER,
        )
    ).json()
    assert metrics["groups"][0]["flags"]["empty"] == 22
