"""The audit log's consumer: every event of every platform topic, appended in batches to the chain."""

from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Consumer, Delivery
from llmops.db import Database
from llmops_audit import service
from llmops_audit.settings import AuditSettings


def audit_consumer(settings: AuditSettings, db: Database, broker: KafkaBroker) -> Consumer:
    consumer = Consumer(
        settings.consumer_group,
        db,
        broker,
        settings.topics,
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
        max_records=settings.consumer_max_records,
    )

    @consumer.on_batch
    async def record(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
        await service.append(session, deliveries)

    consumer.subscribe(description="audit: appends every platform event to the hash-chained log")
    return consumer
