"""HTTP routes of alert rules, policies and the alerts that are active. ml-engineers (and admins) set them; viewers
read them. Each creation and deletion is an event, written in the request's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from llmops.errors import unprocessable
from llmops.http import CurrentRuntime, Session
from llmops.openapi import problems
from llmops.types import JsonInt, RequestBody, UUIDPath
from llmops_monitoring import alerts, policies
from llmops_monitoring.alerts import Comparison
from llmops_monitoring.metrics import METRIC_NAMES, METRIC_PREFIXES, is_metric_name
from llmops_monitoring.permissions import Reader, Writer
from llmops_schemas.events.monitoring import PolicyAction, PolicyTrigger

router = APIRouter(prefix="/projects/{project}/monitoring", tags=["monitoring"])

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$")]
Id = Annotated[str, Field(min_length=1, max_length=256)]
Limit = Annotated[int, Query(ge=1, le=1000)]
DAY = 86_400


# -- bodies and answers ---------------------------------------------------------------------------------------------
class RuleFilters(RequestBody):
    """Which buckets the rule reads (all of the project's when empty)."""

    route: Id | None = None
    deployment_id: Id | None = None
    model_version_id: Id | None = None
    user: Id | None = None


class RuleIn(RequestBody):
    name: Name
    metric: str = Field(
        max_length=128,
        description=f"one of {', '.join(METRIC_NAMES)}, or {' / '.join(p + '<kind>' for p in METRIC_PREFIXES)}",
    )
    filters: RuleFilters = Field(default_factory=RuleFilters)
    comparison: Comparison
    threshold: float = Field(allow_inf_nan=False, ge=-1e15, le=1e15)
    window_seconds: JsonInt = Field(ge=60, le=30 * DAY, description="the metric is read over this many seconds back")
    for_seconds: JsonInt = Field(default=0, ge=0, le=7 * DAY, description="how long it must hold before firing")


class RuleOut(BaseModel):
    id: str
    name: str
    metric: str
    filters: dict[str, str]
    comparison: str
    threshold: float
    window_seconds: int
    for_seconds: int
    state: Literal["ok", "pending", "firing"]
    pending_since: datetime | None
    last_value: float | None
    last_evaluated_at: datetime | None
    created_by: str
    created_at: datetime


class PolicyIn(RequestBody):
    name: Name
    deployment_id: Id | None = Field(default=None, description="the deployment watched (or model_name)")
    model_name: Id | None = Field(default=None, description="every deployment of this model (or deployment_id)")
    on: PolicyTrigger
    action: PolicyAction
    suite_id: Id | None = Field(default=None, description="the suite an evaluate action runs")
    dataset_id: Id | None = Field(default=None, description="the dataset whose newest version a retrain action uses")
    cool_down_seconds: JsonInt = Field(ge=0, le=365 * DAY, description="no second action within this time")


class PolicyOut(BaseModel):
    id: str
    name: str
    deployment_id: str | None
    model_name: str | None
    on: str
    action: str
    suite_id: str | None
    dataset_id: str | None
    cool_down_seconds: int
    last_triggered_at: datetime | None
    created_by: str
    created_at: datetime


class ActionOut(BaseModel):
    id: str
    policy_id: str
    cause_event_id: str
    cause_type: str
    outcome: Literal["triggered", "cooling_down"]
    event_id: str | None
    created_at: datetime


class BudgetAlertOut(BaseModel):
    budget_id: str
    scope: str
    subject: str
    period: str
    max_tokens: int | None
    max_cost: float | None
    state: str


class AlertsOut(BaseModel):
    rules: list[RuleOut]
    budgets: list[BudgetAlertOut]


# -- rules ----------------------------------------------------------------------------------------------------------
@router.post(
    "/rules",
    status_code=201,
    summary="Create an alert rule: a metric over a window against a threshold, held for a while",
    responses=problems(409, 422),
)
async def create_rule(body: RuleIn, session: Session, runtime: CurrentRuntime, scope: Writer) -> RuleOut:
    if not is_metric_name(body.metric):
        raise unprocessable(f"unknown metric {body.metric!r}", "metric")
    definition = body.model_dump(exclude={"name"})
    definition["filters"] = body.filters.model_dump(exclude_none=True)
    rule = await alerts.create_rule(
        session, runtime, project=scope.project, actor=scope.actor, name=body.name, **definition
    )
    return RuleOut(**rule)


@router.get("/rules", summary="The project's alert rules with their state")
async def list_rules(session: Session, scope: Reader) -> list[RuleOut]:
    return [RuleOut(**r) for r in await alerts.list_rules(session, scope.project)]


@router.get("/rules/{rule_id}", summary="One alert rule with its state", responses=problems(404))
async def get_rule(rule_id: UUIDPath, session: Session, scope: Reader) -> RuleOut:
    return RuleOut(**await alerts.get_rule(session, scope.project, rule_id))


@router.delete("/rules/{rule_id}", status_code=204, summary="Delete an alert rule", responses=problems(404))
async def delete_rule(rule_id: UUIDPath, session: Session, runtime: CurrentRuntime, scope: Writer) -> Response:
    await alerts.delete_rule(session, runtime, project=scope.project, rule_id=rule_id, actor=scope.actor)
    return Response(status_code=204)


# -- policies -------------------------------------------------------------------------------------------------------
@router.post(
    "/policies",
    status_code=201,
    summary="Create a policy: on drift, an alert or an anomaly of a deployment (or model), evaluate, retrain or notify",
    responses=problems(409, 422),
)
async def create_policy(body: PolicyIn, session: Session, runtime: CurrentRuntime, scope: Writer) -> PolicyOut:
    policy = await policies.create_policy(
        session, runtime, project=scope.project, actor=scope.actor, **body.model_dump()
    )
    return PolicyOut(**policy)


@router.get("/policies", summary="The project's policies")
async def list_policies(session: Session, scope: Reader) -> list[PolicyOut]:
    return [PolicyOut(**p) for p in await policies.list_policies(session, scope.project)]


@router.get("/policies/{policy_id}", summary="One policy", responses=problems(404))
async def get_policy(policy_id: UUIDPath, session: Session, scope: Reader) -> PolicyOut:
    return PolicyOut(**await policies.get_policy(session, scope.project, policy_id))


@router.delete("/policies/{policy_id}", status_code=204, summary="Delete a policy", responses=problems(404))
async def delete_policy(policy_id: UUIDPath, session: Session, runtime: CurrentRuntime, scope: Writer) -> Response:
    await policies.delete_policy(session, runtime, project=scope.project, policy_id=policy_id, actor=scope.actor)
    return Response(status_code=204)


@router.get(
    "/policies/{policy_id}/actions",
    summary="What a policy did and why (the cause event), newest first: triggered, or skipped while cooling down",
)
async def list_actions(policy_id: UUIDPath, session: Session, scope: Reader, limit: Limit = 100) -> list[ActionOut]:
    return [ActionOut(**a) for a in await policies.list_actions(session, scope.project, policy_id, limit)]


# -- alerts ---------------------------------------------------------------------------------------------------------
@router.get("/alerts", summary="The rules pending or firing, and the budgets whose alert is firing")
async def active_alerts(session: Session, scope: Reader) -> AlertsOut:
    active = await alerts.active_alerts(session, scope.project)
    return AlertsOut(
        rules=[RuleOut(**r) for r in active["rules"]],
        budgets=[BudgetAlertOut(**b) for b in active["budgets"]],
    )
