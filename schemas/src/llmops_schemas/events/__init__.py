"""Event payloads by domain. Importing this package registers every payload in :data:`PAYLOADS`."""

from llmops_schemas.events.audit import CheckpointSigned
from llmops_schemas.events.datasets import (
    DatasetCreated,
    DatasetImportFailed,
    DatasetImportRequested,
    DatasetVersionCreated,
    DatasetVersionDeprecated,
)
from llmops_schemas.events.dead_letters import DeadLettersReplayed
from llmops_schemas.events.deployments import (
    ApiKeyCreated,
    ApiKeyRevoked,
    BudgetSet,
    DeploymentFailed,
    DeploymentGateOverridden,
    DeploymentReady,
    DeploymentRequested,
    DeploymentRestarted,
    DeploymentStopped,
    DeploymentStopRequested,
    RouteChanged,
)
from llmops_schemas.events.evaluation import (
    EvaluationGateDecided,
    EvaluationGateOverridden,
    EvaluationRunCompleted,
    EvaluationRunFailed,
    EvaluationRunProgress,
    EvaluationRunRequested,
    EvaluationRunStarted,
    EvaluationSuiteCreated,
)
from llmops_schemas.events.feedback import FeedbackSubmitted
from llmops_schemas.events.inference import InferenceCompleted, InferenceFailed
from llmops_schemas.events.models import BaseModelRegistered, ModelAliasMoved, ModelVersionRegistered
from llmops_schemas.events.monitoring import (
    MonitoringAlertFired,
    MonitoringAlertResolved,
    MonitoringAnomalyDetected,
    MonitoringDriftDetected,
    MonitoringPolicySet,
    MonitoringPolicyTriggered,
    MonitoringRuleSet,
)
from llmops_schemas.events.platform import ProbeSent
from llmops_schemas.events.prompts import PromptCreated, PromptLabelMoved, PromptVersionCreated
from llmops_schemas.events.security import AccessDenied
from llmops_schemas.events.training import (
    TrainingJobCancelled,
    TrainingJobCompleted,
    TrainingJobFailed,
    TrainingJobProgress,
    TrainingJobRequested,
    TrainingJobRequeued,
    TrainingJobStarted,
)

__all__ = [
    "AccessDenied",
    "ApiKeyCreated",
    "ApiKeyRevoked",
    "BaseModelRegistered",
    "BudgetSet",
    "CheckpointSigned",
    "DatasetCreated",
    "DatasetImportFailed",
    "DatasetImportRequested",
    "DatasetVersionCreated",
    "DatasetVersionDeprecated",
    "DeadLettersReplayed",
    "DeploymentFailed",
    "DeploymentGateOverridden",
    "DeploymentReady",
    "DeploymentRequested",
    "DeploymentRestarted",
    "DeploymentStopRequested",
    "DeploymentStopped",
    "EvaluationGateDecided",
    "EvaluationGateOverridden",
    "EvaluationRunCompleted",
    "EvaluationRunFailed",
    "EvaluationRunProgress",
    "EvaluationRunRequested",
    "EvaluationRunStarted",
    "EvaluationSuiteCreated",
    "FeedbackSubmitted",
    "InferenceCompleted",
    "InferenceFailed",
    "ModelAliasMoved",
    "ModelVersionRegistered",
    "MonitoringAlertFired",
    "MonitoringAlertResolved",
    "MonitoringAnomalyDetected",
    "MonitoringDriftDetected",
    "MonitoringPolicySet",
    "MonitoringPolicyTriggered",
    "MonitoringRuleSet",
    "ProbeSent",
    "PromptCreated",
    "PromptLabelMoved",
    "PromptVersionCreated",
    "RouteChanged",
    "TrainingJobCancelled",
    "TrainingJobCompleted",
    "TrainingJobFailed",
    "TrainingJobProgress",
    "TrainingJobRequested",
    "TrainingJobRequeued",
    "TrainingJobStarted",
]
