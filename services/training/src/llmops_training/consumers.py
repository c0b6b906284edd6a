"""The training service's projections of other services' events: dataset versions (and their deprecation) and
prompt versions, so that a job request is checked without calling those services. In the same group, whose offsets
start as the projections' do: monitoring policies' ``retrain`` actions (``monitoring.policy.triggered`` on
``llmops.monitoring``), each a job requested once per event (:mod:`llmops_training.retraining`).

Events of different subjects, relays and dead-letter replays arrive in any order, some more than once: every handler
is an upsert that converges to the same rows whatever the order (a deprecation before its version is kept as a
tombstone and applied when the version arrives), rather than a retry until the row it refers to exists."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Consumer
from llmops.db import Database
from llmops.runtime import Runtime
from llmops_schemas import CloudEvent, topics
from llmops_schemas.events import (
    DatasetVersionCreated,
    DatasetVersionDeprecated,
    MonitoringPolicyTriggered,
    PromptVersionCreated,
)
from llmops_training import repository, retraining, service
from llmops_training.settings import TrainingSettings


def projections_consumer(settings: TrainingSettings, db: Database, broker: KafkaBroker) -> Consumer:
    # What stamps the retrain jobs' events as the service's own (never started: the service's runtime relays them).
    runtime = Runtime(settings, db, broker, run_relay=False)
    consumer = Consumer(
        settings.consumer_group,
        db,
        broker,
        [topics.DATASETS, topics.PROMPTS, topics.MONITORING],
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
    )

    @consumer.on(DatasetVersionCreated.event_type)
    async def dataset_version_created(session: AsyncSession, event: CloudEvent, v: DatasetVersionCreated) -> None:
        await service.project_dataset_version(
            session,
            {
                "version_id": v.version_id,
                "dataset_id": v.dataset_id,
                "project": v.project,
                "name": v.name,
                "version": v.version,
                "format": v.format,
                "uri": v.uri,
                "sha256": v.sha256,
                "row_count": v.row_count,
                "splits": v.splits,
            },
        )

    @consumer.on(DatasetVersionDeprecated.event_type)
    async def dataset_version_deprecated(session: AsyncSession, event: CloudEvent, v: DatasetVersionDeprecated) -> None:
        await service.project_deprecation(session, v.version_id, v.reason, event.time, event.id)

    @consumer.on(PromptVersionCreated.event_type)
    async def prompt_version_created(session: AsyncSession, event: CloudEvent, v: PromptVersionCreated) -> None:
        await repository.insert_prompt_version(
            session,
            {
                "version_id": v.version_id,
                "prompt_id": v.prompt_id,
                "project": v.project,
                "name": v.name,
                "version": v.version,
                "template": v.template,
                "hash": v.hash,
            },
        )

    @consumer.on(MonitoringPolicyTriggered.event_type)
    async def policy_triggered(session: AsyncSession, event: CloudEvent, v: MonitoringPolicyTriggered) -> None:
        await retraining.retrain_for_policy(session, runtime, settings, event, v)

    consumer.subscribe(
        description="training: projections of dataset versions (deprecation) and prompt versions; monitoring "
        "policies' retrain actions",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer
