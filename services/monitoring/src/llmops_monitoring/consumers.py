"""The monitoring service's Kafka subscribers: the inference records (ours and other systems', the same JSON Schema),
taken in batches, each batch stored as Parquet, counted in the metrics and checked for unusual outputs in one
transaction with its inbox rows; the projections of deployments (what may be watched), budgets (alerts at a
share of them) and evaluation runs and gate decisions (the drift reference of a model version); feedback, counted
in the metrics of the request it is about; and the monitoring events that policies act on (drift, alerts,
anomalies).

Malformed records go to the dead-letter topic with their reason (the shared consumer's decoding); a redelivered
batch counts once (the inbox).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import Consumer
from llmops.runtime import Runtime
from llmops_monitoring import evaluation_reference, feedback_metrics, policies, repository
from llmops_monitoring.ingest import Ingest
from llmops_monitoring.records import RecordRows
from llmops_monitoring.settings import MonitoringSettings
from llmops_schemas import CloudEvent, topics
from llmops_schemas.events import (
    BudgetSet,
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStopped,
    EvaluationGateDecided,
    EvaluationGateOverridden,
    EvaluationRunCompleted,
    FeedbackSubmitted,
    MonitoringAlertFired,
    MonitoringAnomalyDetected,
    MonitoringDriftDetected,
)


def records_consumer(settings: MonitoringSettings, runtime: Runtime) -> Consumer:
    consumer = Consumer(
        settings.records_group,
        runtime.db,
        runtime.broker,
        settings.records_topics,
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
        max_records=settings.records_batch_max,
    )

    consumer.on_rows(RecordRows(), Ingest(runtime, settings))

    consumer.subscribe(
        description="monitoring: inference records into the record store, the metrics and the anomaly counts",
        auto_offset_reset=settings.records_offset_reset,
        partition_fetch_bytes=settings.records_fetch_bytes,
    )
    return consumer


def projections_consumer(settings: MonitoringSettings, runtime: Runtime) -> Consumer:
    consumer = Consumer(
        settings.consumer_group,
        runtime.db,
        runtime.broker,
        [topics.DEPLOYMENTS, topics.FEEDBACK, topics.EVALUATIONS],
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
    )

    @consumer.on(DeploymentRequested.event_type)
    async def requested(session: AsyncSession, event: CloudEvent, v: DeploymentRequested) -> None:
        await repository.deployment_requested(session, event, v)
        await policies.deployment_known(session, runtime, v.deployment_id)

    @consumer.on(DeploymentReady.event_type, DeploymentFailed.event_type, DeploymentStopped.event_type)
    async def status(session: AsyncSession, event: CloudEvent, v) -> None:
        await repository.deployment_status(session, event, v)

    @consumer.on(BudgetSet.event_type)
    async def budget_set(session: AsyncSession, event: CloudEvent, v: BudgetSet) -> None:
        await repository.set_budget(session, event, v)

    @consumer.on(FeedbackSubmitted.event_type)
    async def feedback(session: AsyncSession, event: CloudEvent, v: FeedbackSubmitted) -> None:
        await feedback_metrics.count(session, event, v)

    @consumer.on(EvaluationRunCompleted.event_type)
    async def evaluated(session: AsyncSession, event: CloudEvent, v: EvaluationRunCompleted) -> None:
        await evaluation_reference.run_completed(session, event, v)

    @consumer.on(EvaluationGateDecided.event_type, EvaluationGateOverridden.event_type)
    async def gated(session: AsyncSession, event: CloudEvent, v) -> None:
        await evaluation_reference.gate_decided(session, event, v)

    consumer.subscribe(
        description="monitoring: projections of deployments, budgets and gating evaluations; feedback into the metrics",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer


def policies_consumer(settings: MonitoringSettings, runtime: Runtime) -> Consumer:
    consumer = Consumer(
        f"{settings.consumer_group}-policies",
        runtime.db,
        runtime.broker,
        [topics.MONITORING],
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
    )

    @consumer.on(
        MonitoringDriftDetected.event_type, MonitoringAlertFired.event_type, MonitoringAnomalyDetected.event_type
    )
    async def cause(session: AsyncSession, event: CloudEvent, v) -> None:
        await policies.on_monitoring_event(session, runtime, event)

    consumer.subscribe(
        description="monitoring: drift, alerts and anomalies into the actions their policies ask for",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer
