"""The deployment service's Kafka subscribers: projections of model and evaluation events, and the service's own
inference records (what lineage answers from)."""

from __future__ import annotations

from llmops.bus import Consumer
from llmops.runtime import Runtime
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas import topics


def projections_consumer(settings: DeploymentSettings, runtime: Runtime) -> Consumer:
    consumer = Consumer(
        settings.consumer_group,
        runtime.db,
        runtime.broker,
        [topics.MODELS, topics.EVALUATIONS],
        max_attempts=settings.consumer_max_attempts,
        backoff_seconds=settings.consumer_backoff_seconds,
    )
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
    consumer.subscribe(
        description="deployment: inference records (what lineage answers from)",
        auto_offset_reset=settings.consumer_offset_reset,
    )
    return consumer
