"""Waiting on the monitoring service's ingest: records stored, consumer caught up, files published."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from llmops.testing import caught_up
from llmops_monitoring.models import record_files


async def stored_rows(service) -> int:
    async with service.runtime.db.sessions() as session:
        return (await session.execute(select(func.coalesce(func.sum(record_files.c.rows), 0)))).scalar_one()


async def wait_rows(service, expected: int, within: float = 60) -> None:
    """Wait until ``expected`` records are stored, then until the records consumer has caught up."""
    deadline = time.monotonic() + within
    while (found := await stored_rows(service)) < expected:
        assert time.monotonic() < deadline, f"{found} of {expected} records stored"
        await asyncio.sleep(0.1)
    await caught_up(service.settings.records_group, service.settings.records_topics)
