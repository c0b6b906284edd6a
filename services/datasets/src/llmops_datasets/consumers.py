"""The datasets service's Kafka subscriber: imports requested by event (``dataset.import.requested``).

It reads ``llmops.datasets``, where the service publishes its own facts too: those types have no handler here and are
skipped. The Consumer machinery dead-letters a malformed request (not JSON, a bad envelope or payload) with the
reason, retries an outage for as long as it lasts, and its inbox makes a redelivered event a no-op; a well-formed
request that cannot be imported is answered with ``dataset.import.failed`` through the outbox, not dead-lettered."""

from __future__ import annotations

from collections.abc import Callable

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Consumer
from llmops.runtime import Actor, Runtime
from llmops_datasets import imports
from llmops_datasets.parallel import IngestPool
from llmops_datasets.settings import DatasetsSettings
from llmops_schemas import CloudEvent, topics
from llmops_schemas.events import DatasetImportRequested

#: The topics the service subscribes to.
TOPICS: tuple[str, ...] = (topics.DATASETS,)


def imports_consumer(
    settings: DatasetsSettings, runtime: Runtime, broker: KafkaBroker, pool: Callable[[], IngestPool | None]
) -> Consumer:
    """The consumer of import requests; ``pool`` gives the service's ingest workers when it runs them."""
    consumer = Consumer(
        settings.consumer_group,
        runtime.db,
        broker,
        TOPICS,
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
        max_records=1,  # an import is long work: one at a time, each committed on its own
    )

    @consumer.on(DatasetImportRequested.event_type)
    async def import_requested(session: AsyncSession, event: CloudEvent, request: DatasetImportRequested) -> None:
        await imports.import_requested(
            session,
            runtime,
            request,
            limit=settings.max_upload_bytes,
            spool_dir=settings.spool_dir,
            actor=Actor(request.requested_by, event.correlationid or event.id),
            pool=pool(),
        )

    consumer.subscribe(
        description="datasets: imports of versions from the object store (dataset.import.requested)",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer
