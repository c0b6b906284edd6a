"""Event payloads by domain. Importing this package registers every payload in :data:`PAYLOADS`."""

from llmops_schemas.events.audit import CheckpointSigned
from llmops_schemas.events.datasets import DatasetCreated, DatasetVersionCreated, DatasetVersionDeprecated
from llmops_schemas.events.platform import ProbeSent
from llmops_schemas.events.prompts import PromptCreated, PromptLabelMoved, PromptVersionCreated
from llmops_schemas.events.security import AccessDenied

__all__ = [
    "AccessDenied",
    "CheckpointSigned",
    "DatasetCreated",
    "DatasetVersionCreated",
    "DatasetVersionDeprecated",
    "ProbeSent",
    "PromptCreated",
    "PromptLabelMoved",
    "PromptVersionCreated",
]
