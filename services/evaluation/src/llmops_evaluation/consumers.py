"""The evaluation service's Kafka subscribers.

**Projections** of dataset, prompt and model events (what a suite or run may name), and **triggers**: an event type a
suite names among its ``triggers`` starts a run of the suite's latest version on the model the event is about
(``model.version.registered`` is the first; :data:`llmops_evaluation.triggers.TRIGGERS` is where others are added).
Events of different subjects, relays and dead-letter replays arrive in any order, some more than once: every handler
is an upsert that converges, and a triggered run is keyed on the triggering event's id, so it starts once.

**Monitoring policies**: ``monitoring.policy.triggered`` with action ``evaluate`` runs the suite it names on the model
version it names, once per event (:func:`llmops_evaluation.service.run_for_policy`). It is the projections' group
that reads ``llmops.monitoring`` too (its offsets start where ``consumer_offset_reset`` says): one consumer to run.

**Feedback**: ``feedback.submitted`` from any system on ``llmops.feedback``, counted once per event id.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Consumer
from llmops.runtime import Runtime
from llmops_evaluation import repository, service
from llmops_evaluation.settings import EvaluationSettings
from llmops_schemas import CloudEvent, topics
from llmops_schemas.events import (
    BaseModelRegistered,
    DatasetVersionCreated,
    DatasetVersionDeprecated,
    ModelAliasMoved,
    ModelVersionRegistered,
    MonitoringPolicyTriggered,
    PromptVersionCreated,
)


def projections_consumer(settings: EvaluationSettings, runtime: Runtime) -> Consumer:
    consumer = Consumer(
        settings.consumer_group,
        runtime.db,
        runtime.broker,
        [topics.DATASETS, topics.PROMPTS, topics.MODELS, topics.MONITORING],
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

    @consumer.on(BaseModelRegistered.event_type)
    async def base_model_registered(session: AsyncSession, event: CloudEvent, v: BaseModelRegistered) -> None:
        await repository.insert_base_model(
            session,
            {
                "base_model_id": v.base_model_id,
                "project": v.project,
                "name": v.name,
                "source": v.source,
                "manifest_sha256": v.manifest_sha256,
                "hub_id": v.hub_id,
                "revision": v.revision,
            },
        )

    @consumer.on(ModelVersionRegistered.event_type)
    async def model_version_registered(session: AsyncSession, event: CloudEvent, v: ModelVersionRegistered) -> None:
        await service.project_model_version(session, runtime, settings, event, v)

    @consumer.on(ModelAliasMoved.event_type)
    async def alias_moved(session: AsyncSession, event: CloudEvent, v: ModelAliasMoved) -> None:
        await repository.move_alias(
            session,
            {"project": v.project, "name": v.name, "alias": v.alias, "version": v.to_version, "event_time": event.time},
        )

    @consumer.on(MonitoringPolicyTriggered.event_type)
    async def policy_triggered(session: AsyncSession, event: CloudEvent, v: MonitoringPolicyTriggered) -> None:
        await service.run_for_policy(session, runtime, settings, event, v)

    consumer.subscribe(
        description="evaluation: projections of datasets, prompts and models; suites' triggers; monitoring policies' "
        "re-evaluations",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer


def feedback_consumer(settings: EvaluationSettings, runtime: Runtime) -> Consumer:
    """``feedback.submitted`` from any system, in a consumer group of its own (its inbox counts each event once; the
    feedback table's key, the event id, is the second guard, and makes the API's own events no-ops here)."""
    from llmops_evaluation import feedback  # here, so that this consumer is appended whole
    from llmops_schemas.events import FeedbackSubmitted

    name = f"{settings.consumer_group}-feedback"
    consumer = Consumer(
        name,
        runtime.db,
        runtime.broker,
        [topics.FEEDBACK],
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
    )

    @consumer.on(FeedbackSubmitted.event_type)
    async def feedback_submitted(session: AsyncSession, event: CloudEvent, v: FeedbackSubmitted) -> None:
        await feedback.record_submitted(session, event, v)

    consumer.subscribe(
        description="evaluation: human feedback (feedback.submitted) from any system, counted once per event id",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer
