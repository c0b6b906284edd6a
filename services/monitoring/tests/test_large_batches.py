"""A batch of more records than one statement may carry parameters for (asyncpg's 32,767; the request index has seven
columns, so 4,682 records passed it): stored and counted whole. Such a batch once failed every time, and, taken for
an outage, stalled the records consumer for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from sqlalchemy import func, select

from llmops_monitoring import metrics_store, repository
from llmops_monitoring.models import request_index
from llmops_monitoring.records import SCHEMA, record_of
from llmops_schemas import parse_payload

from . import events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_batch_of_six_thousand_records_is_indexed_and_counted(monitoring):
    sent = [events.completed(deployment_id=f"d{i % 3}", user=f"u{i % 40}") for i in range(6_000)]
    records = [record_of(e, parse_payload(e)) for e in sent]
    async with monitoring.runtime.db.transaction() as session:
        await repository.index_requests(session, pa.Table.from_pylist(records, schema=SCHEMA))
        await metrics_store.add_records(session, records)
    async with monitoring.runtime.db.sessions() as session:
        indexed = (await session.execute(select(func.count()).select_from(request_index))).scalar_one()
        times = dict((await session.execute(select(request_index.c.request_id, request_index.c.time))).all())
        now = datetime.now(UTC)
        window = dict(project="p1", start=now - timedelta(hours=2), end=now + timedelta(hours=1), limit=10_000)
        everyone = await metrics_store.read_buckets(session, resolution="hour", **window)
        per_user = await metrics_store.read_buckets(session, resolution="minute", by_user=True, **window)
    assert indexed == 6_000
    assert times == {r["request_id"]: r["time"] for r in records}  # to the microsecond
    assert sum(b.requests for _, b in everyone) == 6_000
    assert sum(b.requests for _, b in per_user) == 6_000 and {k.user for k, _ in per_user} == {
        f"u{i}" for i in range(40)
    }
    assert all(b.latency.count == 0 for _, b in per_user)  # per-user buckets keep no sketches
