"""Training events: jobs requested by the training service and carried out by training workers.

``training.job.requested`` is the fact that a job was accepted; it carries everything a worker needs (base model,
dataset version, prompt version, method, hyperparameters), so a worker reads no other service's state. The worker
then reports ``started``, throttled ``progress``, and one of ``completed``, ``failed`` or ``cancelled``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload

Method = Literal["full", "lora", "qlora"]
SHA256 = r"^[0-9a-f]{64}$"


class BaseModelRef(BaseModel):
    """A registered base model: content-addressed in the object store, or a hub id resolved by the worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_model_id: str
    name: str
    source: Literal["upload", "hub"]
    manifest_sha256: str | None = Field(default=None, pattern=SHA256, description="upload: the files' manifest")
    hub_id: str | None = None
    revision: str | None = None


class DatasetRef(BaseModel):
    """The dataset version trained on: its canonical JSONL and how its splits are derived."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_id: str
    version_id: str
    name: str
    version: int
    format: str
    uri: str
    sha256: str = Field(pattern=SHA256)
    splits: dict[str, Any]
    split: Literal["train", "validation", "test"] = "train"


class PromptRef(BaseModel):
    """The prompt version the examples are rendered through."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_id: str
    version_id: str
    name: str
    version: int
    template: dict[str, Any]
    hash: str = Field(pattern=SHA256)


class TrainingJobRequested(EventPayload):
    """A fine-tuning job was accepted and waits for a worker of its pool. Subject: the job id."""

    event_type: ClassVar[str] = "training.job.requested"
    topic: ClassVar[str] = topics.TRAINING

    job_id: str
    project: str
    pool: str
    model_name: str
    method: Method
    hyperparameters: dict[str, Any]
    base_model: BaseModelRef
    dataset: DatasetRef
    prompt: PromptRef | None = None
    requested_by: str


class TrainingJobStarted(EventPayload):
    """A worker began (or resumed) a job. Subject: the job id."""

    event_type: ClassVar[str] = "training.job.started"
    topic: ClassVar[str] = topics.TRAINING

    job_id: str
    project: str
    worker: str
    attempt: int = Field(ge=1)
    resumed_from_step: int | None = Field(default=None, ge=0)
    max_steps: int = Field(ge=0)
    examples: int = Field(ge=0)


class TrainingJobProgress(EventPayload):
    """Where a running job is (throttled by the worker). Subject: the job id."""

    event_type: ClassVar[str] = "training.job.progress"
    topic: ClassVar[str] = topics.TRAINING

    job_id: str
    project: str
    step: int = Field(ge=0)
    max_steps: int = Field(ge=0)
    epoch: float = Field(ge=0)
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float = Field(ge=0)
    eta_seconds: float | None = Field(default=None, ge=0)


class TrainingJobCompleted(EventPayload):
    """A job finished and its model version is registered. Subject: the job id."""

    event_type: ClassVar[str] = "training.job.completed"
    topic: ClassVar[str] = topics.TRAINING

    job_id: str
    project: str
    model_version_id: str
    metrics: dict[str, Any]


class TrainingJobFailed(EventPayload):
    """A job ended in error; ``reason`` says why. Subject: the job id."""

    event_type: ClassVar[str] = "training.job.failed"
    topic: ClassVar[str] = topics.TRAINING

    job_id: str
    project: str
    reason: str
    attempt: int = Field(ge=0)


class TrainingJobRequeued(EventPayload):
    """A running job went back to the queue: its worker was stopping, so it saved a checkpoint at ``at_step`` (None:
    before training began) and handed the job over, or it met an outage of the infrastructure (``reason`` says which);
    the next worker of the pool resumes from its last checkpoint. Subject: the job id."""

    event_type: ClassVar[str] = "training.job.requeued"
    topic: ClassVar[str] = topics.TRAINING

    job_id: str
    project: str
    worker: str
    attempt: int = Field(ge=1)
    at_step: int | None = Field(default=None, ge=0)
    reason: str


class TrainingJobCancelled(EventPayload):
    """A job was cancelled (before it started, or at the next step of a running one). Subject: the job id."""

    event_type: ClassVar[str] = "training.job.cancelled"
    topic: ClassVar[str] = topics.TRAINING

    job_id: str
    project: str
    at_step: int | None = Field(default=None, ge=0)
    cancelled_by: str
