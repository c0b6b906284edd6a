"""Monitoring events: what the monitoring service sees in the inference records, and what its policies ask for.

``monitoring.anomaly.detected`` (unusual outputs of one kind past their threshold in a window, grouped and
throttled), ``monitoring.drift.detected`` (an Evidently report of a current window against a reference found the
drifted share past its threshold), ``monitoring.alert.fired`` / ``.resolved`` (an alert rule's condition held for its
duration, then stopped holding). A **policy** turns one of these into an action: ``monitoring.policy.triggered``
names the action (re-evaluate with a suite, retrain with a dataset's newest version, notify) and the event that caused
it; the evaluation service and the training service act on it, so the audit trail reads cause → action → result.
Rules and policies are set through the monitoring API; each change is an event too. Subject: the deployment id for
anomalies and drift, the rule id for alerts, the policy id for policies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload

SHA256 = r"^[0-9a-f]{64}$"

#: The kinds of unusual output flagged per request.
AnomalyKind = Literal[
    "empty",
    "truncated",
    "repetition",
    "pii",
    "refusal",
    "length_outlier",
    "latency_outlier",
    "tokens_outlier",
]
PolicyTrigger = Literal["drift", "alert", "anomaly"]
PolicyAction = Literal["evaluate", "retrain", "notify"]


class Window(BaseModel):
    """A half-open time range ``[start, end)`` of records."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime


class MonitoringAnomalyDetected(EventPayload):
    """Requests flagged ``kind`` passed the threshold in a window. One event per (deployment, kind) and window at
    most, and none again for the same pair within the throttle period. Subject: the deployment id."""

    event_type: ClassVar[str] = "monitoring.anomaly.detected"
    topic: ClassVar[str] = topics.MONITORING

    project: str
    deployment_id: str
    route: str | None = None
    model_version_id: str | None = None
    kind: AnomalyKind
    window: Window
    flagged: int = Field(ge=1, description="records flagged with this kind in the window")
    records: int = Field(ge=1, description="records in the window")
    share: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1, description="the share past which a window is anomalous")
    examples: list[str] = Field(default_factory=list, max_length=10, description="request ids of flagged records")


class DriftColumn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    method: str = Field(description="Evidently's statistical test or distance")
    score: float
    threshold: float
    drifted: bool


class MonitoringDriftDetected(EventPayload):
    """A drift report found the share of drifted columns past the threshold (for the configured number of
    consecutive windows). The report's JSON and snapshot are in the object store. Subject: the deployment id."""

    event_type: ClassVar[str] = "monitoring.drift.detected"
    topic: ClassVar[str] = topics.MONITORING

    project: str
    deployment_id: str
    model_version_id: str | None = None
    report_id: str
    reference: Literal["window", "evaluation_dataset"]
    reference_window: Window | None = None
    reference_run_id: str | None = Field(
        default=None, description="reference evaluation_dataset: the evaluation run that gated the model version"
    )
    current_window: Window
    reference_rows: int = Field(ge=0)
    current_rows: int = Field(ge=0)
    drifted_share: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1)
    columns: list[DriftColumn]
    report_sha256: str = Field(pattern=SHA256, description="the stored JSON report's sha256")


class _AlertState(EventPayload):
    project: str
    rule_id: str
    rule: str = Field(description="the rule's name")
    metric: str
    filters: dict[str, str] = Field(default_factory=dict)
    value: float | None = Field(description="the metric's value over the rule's window when it changed state")
    threshold: float
    comparison: Literal[">", ">=", "<", "<="]
    window_seconds: int = Field(ge=60)
    for_seconds: int = Field(ge=0)


class MonitoringAlertFired(_AlertState):
    """An alert rule's condition held for ``for_seconds``. Subject: the rule id."""

    event_type: ClassVar[str] = "monitoring.alert.fired"
    topic: ClassVar[str] = topics.MONITORING


class MonitoringAlertResolved(_AlertState):
    """A fired alert's condition no longer holds. Subject: the rule id."""

    event_type: ClassVar[str] = "monitoring.alert.resolved"
    topic: ClassVar[str] = topics.MONITORING


class MonitoringRuleSet(EventPayload):
    """An alert rule was created, changed or deleted (``deleted``). Subject: the rule id."""

    event_type: ClassVar[str] = "monitoring.rule.set"
    topic: ClassVar[str] = topics.MONITORING

    project: str
    rule_id: str
    name: str
    definition: dict[str, Any]
    deleted: bool = False
    set_by: str


class PolicyTarget(BaseModel):
    """What a policy watches: a deployment, or every deployment of a model (by name)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_id: str | None = None
    model_name: str | None = None


class MonitoringPolicySet(EventPayload):
    """A policy was created, changed or deleted. Subject: the policy id."""

    event_type: ClassVar[str] = "monitoring.policy.set"
    topic: ClassVar[str] = topics.MONITORING

    project: str
    policy_id: str
    name: str
    target: PolicyTarget
    on: PolicyTrigger
    action: PolicyAction
    suite_id: str | None = None
    dataset_id: str | None = None
    cool_down_seconds: int = Field(ge=0)
    deleted: bool = False
    set_by: str


class MonitoringPolicyTriggered(EventPayload):
    """A policy's trigger happened outside its cool-down: the action is asked for. ``evaluate``: the evaluation
    service runs ``suite_id`` against ``model_version_id``; ``retrain``: the training service requests a job from the
    model version's own lineage with the newest version of ``dataset_id``; ``notify``: nothing but this event.
    ``cause_event_id`` is the drift, alert or anomaly event. Subject: the policy id."""

    event_type: ClassVar[str] = "monitoring.policy.triggered"
    topic: ClassVar[str] = topics.MONITORING

    project: str
    policy_id: str
    policy: str = Field(description="the policy's name")
    on: PolicyTrigger
    action: PolicyAction
    cause_event_id: str
    cause_type: str
    deployment_id: str | None = None
    model_version_id: str | None = None
    suite_id: str | None = None
    dataset_id: str | None = None
    requested_by: str = Field(description="who set the policy: the actions run on their behalf")
