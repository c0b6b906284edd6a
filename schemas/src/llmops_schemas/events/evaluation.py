"""Evaluation events: suites (immutable versions), runs carried out by evaluation workers, release gates, overrides.

``evaluation.run.requested`` carries everything a worker needs (the suite's dataset split, prompt, generation
parameters and scorers, and what to evaluate: a model version with its base model, a base model, or an
OpenAI-compatible endpoint), so a worker reads no other service's state. The worker reports ``started``, throttled
``progress``, and ``completed`` (aggregates with bootstrap 95% intervals, the outputs' artifact) or ``failed``; the
completion comes with ``evaluation.gate.decided`` for the model version and suite version. An admin's
``evaluation.gate.overridden`` records a different outcome with its reason; the decision itself is never changed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload
from llmops_schemas.events.training import BaseModelRef, DatasetRef, PromptRef

SHA256 = r"^[0-9a-f]{64}$"
TargetKind = Literal["model_version", "base_model", "endpoint"]


class SuiteRef(BaseModel):
    """The suite version a run belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite_id: str
    version_id: str
    name: str
    version: int = Field(ge=1)


class Target(BaseModel):
    """What a run evaluates: a registered model version (its base model and its own artifact), a base model, or an
    OpenAI-compatible endpoint (``endpoint`` its base URL, ``endpoint_model`` the model name it is asked for)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: TargetKind
    model_name: str | None = None
    model_version: int | None = Field(default=None, ge=1)
    model_version_id: str | None = None
    artifact_kind: Literal["adapter", "full"] | None = None
    manifest_sha256: str | None = Field(default=None, pattern=SHA256, description="the version's artifact files")
    base_model: BaseModelRef | None = None
    endpoint: str | None = None
    endpoint_model: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "model_version":
            return f"{self.model_name} v{self.model_version}"
        if self.kind == "base_model":
            return f"base model {self.base_model.name if self.base_model else '?'}"
        return f"endpoint {self.endpoint}"


class EvaluationSuiteCreated(EventPayload):
    """A suite version was stored (immutable). ``spec`` is the whole suite: dataset version and split, prompt
    version, generation parameters, scorers, gates, attached models and triggers. Subject: the suite id."""

    event_type: ClassVar[str] = "evaluation.suite.created"
    topic: ClassVar[str] = topics.EVALUATIONS

    suite_id: str
    version_id: str
    project: str
    name: str
    version: int = Field(ge=1)
    spec: dict[str, Any]
    created_by: str


class EvaluationRunRequested(EventPayload):
    """A run was accepted and waits for a worker of its pool. Subject: the run id."""

    event_type: ClassVar[str] = "evaluation.run.requested"
    topic: ClassVar[str] = topics.EVALUATIONS

    run_id: str
    project: str
    pool: str
    suite: SuiteRef
    dataset: DatasetRef
    prompt: PromptRef | None = None
    generation: dict[str, Any]
    scorers: list[dict[str, Any]]
    target: Target
    trigger: str = Field(description="api, or the event type that started it (e.g. model.version.registered)")
    requested_by: str


class EvaluationRunStarted(EventPayload):
    """A worker began (or took over) a run. Subject: the run id."""

    event_type: ClassVar[str] = "evaluation.run.started"
    topic: ClassVar[str] = topics.EVALUATIONS

    run_id: str
    project: str
    worker: str
    attempt: int = Field(ge=1)
    examples: int = Field(ge=0)


class EvaluationRunProgress(EventPayload):
    """Where a running run is (throttled by the worker). Subject: the run id."""

    event_type: ClassVar[str] = "evaluation.run.progress"
    topic: ClassVar[str] = topics.EVALUATIONS

    run_id: str
    project: str
    stage: Literal["generating", "scoring"]
    done: int = Field(ge=0)
    total: int = Field(ge=0)
    examples_per_second: float = Field(ge=0)


class MetricSummary(BaseModel):
    """One metric of a run: its corpus value (the mean, or the scorer's corpus figure such as corpus BLEU), the
    bootstrap 95% interval of the per-example mean, and how many examples it was computed on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float | None
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    n: int = Field(ge=0)
    errors: int = Field(default=0, ge=0)
    unparseable: int = Field(default=0, ge=0)


class EvaluationRunCompleted(EventPayload):
    """A run finished: its aggregates, and the artifact holding every example's input, output, reference, scores and
    latency (JSONL). Subject: the run id."""

    event_type: ClassVar[str] = "evaluation.run.completed"
    topic: ClassVar[str] = topics.EVALUATIONS

    run_id: str
    project: str
    suite: SuiteRef
    target: Target
    examples: int = Field(ge=0)
    metrics: dict[str, MetricSummary]
    signatures: dict[str, str] = Field(default_factory=dict, description="scorer -> its library's signature string")
    artifact_uri: str
    artifact_sha256: str = Field(pattern=SHA256)
    seconds: float = Field(ge=0)


class EvaluationRunFailed(EventPayload):
    """A run ended in error; ``reason`` says why. Subject: the run id."""

    event_type: ClassVar[str] = "evaluation.run.failed"
    topic: ClassVar[str] = topics.EVALUATIONS

    run_id: str
    project: str
    reason: str
    attempt: int = Field(ge=0)


class GateRuleResult(BaseModel):
    """One rule of a gate: its text, whether it passed, the value it judged (and the interval bound it used, for a
    rule relative to an alias) and why."""

    model_config = ConfigDict(frozen=True, extra="allow")

    rule: str
    passed: bool
    value: float | None = None
    bound: float | None = None
    reason: str


class EvaluationGateDecided(EventPayload):
    """The suite's gates were applied to a finished run of a model version. Subject: the model version id (or the
    run id when the run evaluated no model version)."""

    event_type: ClassVar[str] = "evaluation.gate.decided"
    topic: ClassVar[str] = topics.EVALUATIONS

    decision_id: str
    run_id: str
    project: str
    suite: SuiteRef
    target: Target
    passed: bool
    rules: list[GateRuleResult]


class EvaluationGateOverridden(EventPayload):
    """An admin recorded another outcome for a gate decision, with a reason. The decision stays as it was; whoever
    enforces gates (deployment) reads the override beside it. Subject: the model version id (or the run id)."""

    event_type: ClassVar[str] = "evaluation.gate.overridden"
    topic: ClassVar[str] = topics.EVALUATIONS

    override_id: str
    decision_id: str
    run_id: str
    project: str
    suite: SuiteRef
    target: Target
    passed: bool
    reason: str = Field(min_length=1)
    actor: str
