"""One batch of inference records, applied in the consumer's transaction: flat records, staged Parquet files
registered in the manifest, metric buckets merged. Publishing the staged files happens after the commit
(``record_store.publish_pending``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Delivery
from llmops.runtime import Runtime
from llmops_monitoring import record_store
from llmops_monitoring.records import record_of
from llmops_monitoring.settings import MonitoringSettings
from llmops_schemas.events import InferenceCompleted, InferenceFailed


async def ingest(
    session: AsyncSession, runtime: Runtime, settings: MonitoringSettings, deliveries: Sequence[Delivery]
) -> None:
    records = [
        record_of(d.event, d.payload) for d in deliveries if isinstance(d.payload, InferenceCompleted | InferenceFailed)
    ]
    if not records:
        return
    files = await record_store.stage(runtime.store, settings.records_prefix, records)
    await record_store.register(session, files)
