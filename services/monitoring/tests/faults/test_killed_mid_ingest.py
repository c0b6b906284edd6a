"""The monitoring service SIGKILLed while it ingests records (between a batch's files, its transaction and its
offsets, wherever the kill lands), then started again: every record is in the record store exactly once, every file
is published, and the metrics count each record once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from llmops.db import Database
from llmops.testing import caught_up
from llmops_monitoring import record_store
from llmops_monitoring.models import record_files

from .. import events
from ..conftest import publish

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def start_service(settings) -> subprocess.Popen:
    env = os.environ | {
        "LLMOPS_MONITORING_DATABASE_URL": settings.database_url,
        "LLMOPS_MONITORING_RECORDS_TOPICS": json.dumps(settings.records_topics),
        "LLMOPS_MONITORING_RECORDS_GROUP": settings.records_group,
        "LLMOPS_MONITORING_CONSUMER_GROUP": settings.consumer_group,
        "LLMOPS_MONITORING_CONSUMER_OFFSET_RESET": "latest",
        "LLMOPS_MONITORING_RECORDS_PREFIX": settings.records_prefix,
        "LLMOPS_MONITORING_RECORDS_BATCH_MAX": "200",
        "LLMOPS_MONITORING_PUBLISH_INTERVAL_SECONDS": "0.2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "llmops_monitoring.app", "serve", "--no-http", "--no-migrations"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def stored(db: Database) -> tuple[int, int]:
    async with db.sessions() as session:
        rows, files = (
            await session.execute(select(func.coalesce(func.sum(record_files.c.rows), 0), func.count()))
        ).one()
    return rows, files


async def wait_for(db: Database, predicate, what: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while not predicate(await stored(db)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {await stored(db)}"
        await asyncio.sleep(0.05)


async def test_a_service_killed_mid_ingest_loses_and_doubles_nothing(monitoring_settings, records_topic):
    from llmops.storage import ObjectStore

    db, store = Database(monitoring_settings.db_url), ObjectStore(monitoring_settings.s3)
    sent = [events.completed(deployment_id=f"d{i % 3}") for i in range(6_000)]
    first = start_service(monitoring_settings)
    try:
        await publish(records_topic, [e.to_bytes() for e in sent])
        await wait_for(db, lambda s: s[0] >= 1_000, "a first part to be stored")
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = (await stored(db))[0]
        assert killed_at < len(sent), "the service finished before it could be killed"
    finally:
        first.kill()

    second = start_service(monitoring_settings)
    try:
        await wait_for(db, lambda s: s[0] >= len(sent), "every record to be stored")
        await caught_up(monitoring_settings.records_group, monitoring_settings.records_topics)
        deadline = time.monotonic() + 60
        while True:  # every registered file published, including those the kill left in staging
            async with db.sessions() as session:
                unpublished = (
                    await session.execute(select(func.count()).where(~record_files.c.published))
                ).scalar_one()
            if not unpublished:
                break
            assert time.monotonic() < deadline, f"{unpublished} files never published"
            await asyncio.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)

    table = await record_store.read_table(
        db, store, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    )
    ids = table.column("event_id").to_pylist()
    assert len(ids) == len(sent) and set(ids) == {e.id for e in sent}
    assert (await stored(db))[0] == len(sent)
    listed = await store.list_named(monitoring_settings.records_prefix + "/")
    final = [key for key, _, _ in listed if "/_staging/" not in key]
    async with db.sessions() as session:
        registered = set((await session.execute(select(record_files.c.key))).scalars())
    assert set(final) == registered  # nothing in the hive layout that the manifest does not know
    await db.dispose()
