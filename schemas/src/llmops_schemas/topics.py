"""The topic registry: one topic per domain, keyed by the event's subject so an aggregate's events stay in order."""

from __future__ import annotations

DATASETS = "llmops.datasets"
PROMPTS = "llmops.prompts"
TRAINING = "llmops.training"
MODELS = "llmops.models"
EVALUATIONS = "llmops.evaluations"
DEPLOYMENTS = "llmops.deployments"
INFERENCE = "llmops.inference"
FEEDBACK = "llmops.feedback"
MONITORING = "llmops.monitoring"
SECURITY = "llmops.security"
AUDIT = "llmops.audit"
PLATFORM = "llmops.platform"

#: Where a consumer puts what it cannot process: the original bytes, with the reason in headers.
DEAD_LETTER = "llmops.deadletter"

#: Every domain topic; consumers that see everything (audit) subscribe to these.
DOMAIN_TOPICS: tuple[str, ...] = (
    DATASETS,
    PROMPTS,
    TRAINING,
    MODELS,
    EVALUATIONS,
    DEPLOYMENTS,
    INFERENCE,
    FEEDBACK,
    MONITORING,
    SECURITY,
    AUDIT,
    PLATFORM,
)

#: Every topic the platform creates on start.
ALL_TOPICS: tuple[str, ...] = (*DOMAIN_TOPICS, DEAD_LETTER)
