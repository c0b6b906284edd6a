"""The deployment service's Kafka subscribers: projections of model and evaluation events (what may be deployed, and
the gates that allow it), and the service's own inference records (what lineage answers from).

Events of different subjects, relays and dead-letter replays arrive in any order, some more than once: every handler
is an upsert that converges (a model version and a decision are stored once; an alias keeps its latest move by event
time; a suite its newest version; an inference record its first copy).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Consumer
from llmops.runtime import Runtime
from llmops_deployment import repository, service
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas import CloudEvent, topics
from llmops_schemas.events import (
    EvaluationGateDecided,
    EvaluationGateOverridden,
    EvaluationSuiteCreated,
    InferenceCompleted,
    InferenceFailed,
    ModelAliasMoved,
    ModelVersionRegistered,
)


def projections_consumer(settings: DeploymentSettings, runtime: Runtime) -> Consumer:
    consumer = Consumer(
        settings.consumer_group,
        runtime.db,
        runtime.broker,
        [topics.MODELS, topics.EVALUATIONS],
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
    )

    @consumer.on(ModelVersionRegistered.event_type)
    async def model_version_registered(session: AsyncSession, event: CloudEvent, v: ModelVersionRegistered) -> None:
        await service.project_model_version(session, event, v)

    @consumer.on(ModelAliasMoved.event_type)
    async def alias_moved(session: AsyncSession, event: CloudEvent, v: ModelAliasMoved) -> None:
        await repository.move_alias(
            session,
            {"project": v.project, "name": v.name, "alias": v.alias, "version": v.to_version, "event_time": event.time},
        )

    @consumer.on(EvaluationSuiteCreated.event_type)
    async def suite_created(session: AsyncSession, event: CloudEvent, v: EvaluationSuiteCreated) -> None:
        await service.project_suite(session, v)

    @consumer.on(EvaluationGateDecided.event_type)
    async def gate_decided(session: AsyncSession, event: CloudEvent, v: EvaluationGateDecided) -> None:
        await service.project_decision(session, event, v)

    @consumer.on(EvaluationGateOverridden.event_type)
    async def gate_overridden(session: AsyncSession, event: CloudEvent, v: EvaluationGateOverridden) -> None:
        await service.project_override(session, event, v)

    consumer.subscribe(
        description="deployment: projections of model versions, aliases, suites and gate decisions",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer


def inference_consumer(settings: DeploymentSettings, runtime: Runtime) -> Consumer:
    consumer = Consumer(
        f"{settings.consumer_group}-inference",
        runtime.db,
        runtime.broker,
        [topics.INFERENCE],
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
    )

    @consumer.on(InferenceCompleted.event_type, InferenceFailed.event_type)
    async def inference_recorded(
        session: AsyncSession, event: CloudEvent, v: InferenceCompleted | InferenceFailed
    ) -> None:
        await service.record_inference(session, event, v)

    consumer.subscribe(
        description="deployment: inference records (what lineage answers from)",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer
