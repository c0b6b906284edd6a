"""Records workers (ingest in processes of their own) under faults: one SIGKILLed while it ingests is started again,
and every record is stored and counted exactly once; a worker whose service is gone (its stdin closed) ends by
itself; stopping the service stops its workers."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from llmops.testing import caught_up
from llmops_monitoring import record_store
from llmops_monitoring.app import MonitoringService

from .. import events
from ..conftest import publish
from .test_killed_mid_ingest import stored, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def minute_requests(db) -> int:
    async with db.sessions() as session:
        counted = (
            await session.execute(
                text(
                    "SELECT coalesce(sum((data->>'requests')::bigint), 0) FROM metric_buckets"
                    " WHERE resolution = 'minute' AND \"user\" = ''"
                )
            )
        ).scalar_one()
    return int(counted)


async def test_a_worker_killed_mid_ingest_is_started_again_and_nothing_is_lost_or_doubled(
    monitoring_settings, records_topic
):
    settings = monitoring_settings.model_copy(update={"records_workers": 2, "records_batch_max": 200})
    service = MonitoringService(settings)
    service.records_workers.restart_delay = 0.1
    db = service.runtime.db
    sent = [events.completed(deployment_id=f"d{i % 3}") for i in range(6_000)]
    await service.start()
    try:
        await service.records_workers.ready()
        await publish(records_topic, [e.to_bytes() for e in sent])
        await wait_for(db, lambda s: s[0] >= 1_000, "a first part to be stored")
        victim = service.records_workers.processes[0]
        victim.send_signal(signal.SIGKILL)
        killed_at = (await stored(db))[0]
        assert killed_at < len(sent), "ingest finished before a worker could be killed"
        await wait_for(db, lambda s: s[0] >= len(sent), "every record to be stored")
        await caught_up(settings.records_group, settings.records_topics)
        assert service.records_workers.restarts >= 1
        assert service.records_workers.processes[0] is not victim and victim.returncode == -signal.SIGKILL
        assert (await stored(db))[0] == len(sent)
        assert await minute_requests(db) == len(sent)
        table = await record_store.read_table(
            db, service.store, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
        )
        ids = table.column("event_id").to_pylist()
        assert len(ids) == len(sent) and set(ids) == {e.id for e in sent}
        processes = list(service.records_workers.processes)
    finally:
        await service.stop()
    assert all(p is not None and p.returncode is not None for p in processes), "stop left a worker running"


async def test_a_worker_ends_when_its_service_is_gone(monitoring_settings):
    settings = monitoring_settings.model_copy(update={"records_workers": 1})
    service = MonitoringService(settings)
    await service.start()
    try:
        await service.records_workers.ready()
        worker = service.records_workers.processes[0]
        service.records_workers._task.cancel()  # no restarts: as if the service had been killed
        worker.stdin.close()  # what the kernel does to the pipe when the service dies
        deadline = time.monotonic() + 30
        while worker.poll() is None:
            assert time.monotonic() < deadline, "the worker outlived its service"
            await asyncio.sleep(0.1)
        assert worker.returncode == 0  # a clean stop: left its group, closed its connections
    finally:
        await service.stop()
