"""HTTP routes of the deployment service for traffic: routes, API keys, limits and budgets.

ml-engineers (and admins) change them; viewers read them. A key's secret is in the answer to its creation only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from pydantic import AfterValidator, BaseModel, Field

from llmops.http import CurrentRuntime, Session, from_row
from llmops.openapi import problems
from llmops.types import INT32_MAX, INT64_MAX, UUID_PATTERN, JsonInt, Offset, RequestBody, UUIDPath, Version
from llmops_deployment import access, access_queries, routing
from llmops_deployment.permissions import Reader, Writer
from llmops_deployment.routing import ROUTE_NAME, RouteConfig

router = APIRouter(prefix="/projects/{project}", tags=["deployment"])

RouteName = Annotated[str, PathParam(pattern=ROUTE_NAME, description="the route: the model name applications ask for")]
#: A deployment's id in a body, in its canonical lower-case form.
DeploymentId = Annotated[str, Field(pattern=UUID_PATTERN), AfterValidator(lambda value: str(uuid.UUID(value)))]
Reason = Annotated[str, Field(max_length=2000, description="why (kept in the route's history and its event)")]
PerMinute = Annotated[JsonInt, Field(ge=1, le=INT32_MAX)]
Limit = Annotated[int, Query(ge=1, le=500)]


# -- bodies and answers --------------------------------------------------------------------------------------------
class TargetIn(RequestBody):
    deployment_id: DeploymentId
    weight: float = Field(ge=0, le=1_000_000, allow_inf_nan=False, description="relative share of the traffic")


class RouteIn(RequestBody):
    targets: list[TargetIn] = Field(min_length=1, max_length=32)
    shadows: list[DeploymentId] = Field(default_factory=list, max_length=16, description="get copies, never answer")
    fallbacks: list[DeploymentId] = Field(default_factory=list, max_length=16, description="tried in order")
    sticky: bool = Field(default=False, description="the same user (or key) always reaches the same target")
    reason: Reason = ""


class SplitIn(RequestBody):
    deployment_id: DeploymentId
    percent: float = Field(ge=0, le=100, allow_inf_nan=False, description="its share; the others keep their ratios")
    reason: Reason = ""


class ShadowIn(RequestBody):
    deployment_id: DeploymentId
    enabled: bool = True
    reason: Reason = ""


class RollbackIn(RequestBody):
    to_version: Version | None = Field(default=None, description="default: the version before the current one")
    reason: Reason = ""


class DeploymentRefOut(BaseModel):
    deployment_id: str
    name: str | None
    status: str = Field(description="the deployment's status, or missing")


class TargetOut(DeploymentRefOut):
    weight: float
    percent: float = Field(description="its share of the traffic")


class RouteOut(BaseModel):
    id: str
    project: str
    name: str
    version: int
    targets: list[TargetOut]
    shadows: list[DeploymentRefOut]
    fallbacks: list[DeploymentRefOut]
    sticky: bool
    updated_by: str
    updated_at: datetime


class RouteVersionOut(BaseModel):
    version: int
    change: str
    targets: list[dict[str, str | float]]
    shadows: list[str]
    fallbacks: list[str]
    sticky: bool
    restored_version: int | None
    reason: str
    actor: str
    at: datetime


class KeyIn(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    requests_per_minute: PerMinute | None = Field(default=None, description="default: the project's limit")
    tokens_per_minute: PerMinute | None = Field(default=None, description="default: the project's limit")


class RevokeIn(RequestBody):
    reason: Reason = ""


class KeyOut(BaseModel):
    id: str
    project: str
    name: str
    prefix: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None


class KeyCreatedOut(KeyOut):
    secret: str = Field(description="the key: shown this once, never again")


class LimitsIn(RequestBody):
    requests_per_minute: PerMinute | None = Field(default=None, description="None: no project limit")
    tokens_per_minute: PerMinute | None = Field(default=None, description="None: no project limit")


class LimitsOut(BaseModel):
    project: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    updated_by: str | None
    updated_at: datetime | None


class BudgetIn(RequestBody):
    scope: Literal["project", "user", "key"]
    subject: str | None = Field(
        default=None, min_length=1, max_length=256, description="the user or key id (a project budget's: the project)"
    )
    period: Literal["day", "month", "total"]
    max_tokens: JsonInt | None = Field(default=None, ge=0, le=INT64_MAX)
    max_cost: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False)


class BudgetOut(BaseModel):
    id: str
    project: str
    scope: str
    subject: str
    period: str
    max_tokens: int | None
    max_cost: float | None
    updated_by: str
    updated_at: datetime
    window_start: datetime = Field(description="the current window: today, this month (UTC) or 1970 for total")
    used_tokens: int
    used_cost: float
    reserved_tokens: int
    reserved_cost: float


# -- routes --------------------------------------------------------------------------------------------------------
@router.put(
    "/routes/{name}",
    summary="Set a route: its weighted targets, shadows, fallbacks and stickiness (its next version)",
    responses={201: {"description": "the route was created (version 1)"}},
)
async def set_route(
    name: RouteName, body: RouteIn, response: Response, session: Session, runtime: CurrentRuntime, scope: Writer
) -> RouteOut:
    config = RouteConfig([t.model_dump() for t in body.targets], list(body.shadows), list(body.fallbacks), body.sticky)
    row, created = await routing.set_route(
        session, runtime, project=scope.project, name=name, config=config, reason=body.reason, actor=scope.actor
    )
    if created:
        response.status_code = 201
    [described] = await routing.describe(session, scope.project, [row])
    return RouteOut.model_validate(described)


@router.post(
    "/routes/{name}/split", summary="Give a deployment a share of a route's traffic (a canary)", responses=problems(404)
)
async def split_route(
    name: RouteName, body: SplitIn, session: Session, runtime: CurrentRuntime, scope: Writer
) -> RouteOut:
    row = await routing.split(
        session, runtime, project=scope.project, name=name, actor=scope.actor, **body.model_dump()
    )
    [described] = await routing.describe(session, scope.project, [row])
    return RouteOut.model_validate(described)


@router.post(
    "/routes/{name}/shadow",
    summary="Send (or stop sending) a deployment copies of a route's requests",
    responses=problems(404),
)
async def shadow_route(
    name: RouteName, body: ShadowIn, session: Session, runtime: CurrentRuntime, scope: Writer
) -> RouteOut:
    row = await routing.shadow(
        session, runtime, project=scope.project, name=name, actor=scope.actor, **body.model_dump()
    )
    [described] = await routing.describe(session, scope.project, [row])
    return RouteOut.model_validate(described)


@router.post(
    "/routes/{name}/rollback",
    summary="Restore a route as it was at an earlier version (as its next version)",
    responses=problems(404),
)
async def rollback_route(
    name: RouteName, body: RollbackIn, session: Session, runtime: CurrentRuntime, scope: Writer
) -> RouteOut:
    row = await routing.rollback(
        session, runtime, project=scope.project, name=name, actor=scope.actor, **body.model_dump()
    )
    [described] = await routing.describe(session, scope.project, [row])
    return RouteOut.model_validate(described)


@router.get("/routes", summary="The project's routes, by name, with their deployments' names and status")
async def list_routes(session: Session, scope: Reader, limit: Limit = 100, offset: Offset = 0) -> list[RouteOut]:
    rows = await access_queries.list_routes(session, scope.project, limit, offset)
    return [RouteOut.model_validate(r) for r in await routing.describe(session, scope.project, rows)]


@router.get("/routes/{name}", summary="A route with its deployments' names and status", responses=problems(404))
async def show_route(name: RouteName, session: Session, scope: Reader) -> RouteOut:
    return RouteOut.model_validate(await routing.get_route(session, scope.project, name))


@router.get("/routes/{name}/history", summary="A route's versions, newest first", responses=problems(404))
async def route_history(
    name: RouteName, session: Session, scope: Reader, limit: Limit = 100, offset: Offset = 0
) -> list[RouteVersionOut]:
    rows = await routing.history(session, scope.project, name, limit=limit, offset=offset)
    return [from_row(RouteVersionOut, r) for r in rows]


# -- API keys ------------------------------------------------------------------------------------------------------
@router.post("/keys", status_code=201, summary="Create an API key for applications (its secret is shown this once)")
async def create_key(body: KeyIn, session: Session, runtime: CurrentRuntime, scope: Writer) -> KeyCreatedOut:
    row, secret = await access.create_key(
        session, runtime, project=scope.project, actor=scope.actor, **body.model_dump()
    )
    return KeyCreatedOut(**from_row(KeyOut, row).model_dump(), secret=secret)


@router.get("/keys", summary="The project's API keys, newest first (never their secrets)")
async def list_keys(
    session: Session,
    scope: Reader,
    include_revoked: Annotated[bool, Query(description="list revoked keys too")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[KeyOut]:
    rows = await access_queries.list_keys(
        session, scope.project, include_revoked=include_revoked, limit=limit, offset=offset
    )
    return [from_row(KeyOut, r) for r in rows]


@router.post("/keys/{key_id}/revoke", summary="Revoke an API key", responses=problems(404, 409))
async def revoke_key(
    key_id: UUIDPath, session: Session, runtime: CurrentRuntime, scope: Writer, body: RevokeIn | None = None
) -> KeyOut:
    reason = body.reason if body is not None else ""
    row = await access.revoke_key(
        session, runtime, project=scope.project, key_id=key_id, reason=reason, actor=scope.actor
    )
    return from_row(KeyOut, row)


# -- limits and budgets --------------------------------------------------------------------------------------------
@router.get("/limits", summary="The project's requests and tokens per minute (None: no project limit)")
async def show_limits(session: Session, scope: Reader) -> LimitsOut:
    row = await access_queries.get_limits(session, scope.project)
    if row is None:
        return LimitsOut(
            project=scope.project, requests_per_minute=None, tokens_per_minute=None, updated_by=None, updated_at=None
        )
    return from_row(LimitsOut, row)


@router.put("/limits", summary="Set the project's requests and tokens per minute (a field left out: no limit)")
async def set_limits(body: LimitsIn, session: Session, scope: Writer) -> LimitsOut:
    row = await access.set_limits(session, project=scope.project, actor=scope.actor, **body.model_dump())
    return from_row(LimitsOut, row)


@router.put(
    "/budgets",
    summary="Set a token and/or cost budget for the project, a user or a key, per day, month or in total",
    responses={201: {"description": "the budget was created"}},
)
async def set_budget(
    body: BudgetIn, response: Response, session: Session, runtime: CurrentRuntime, scope: Writer
) -> BudgetOut:
    row, created = await access.set_budget(
        session, runtime, project=scope.project, actor=scope.actor, **body.model_dump()
    )
    if created:
        response.status_code = 201
    return from_row(BudgetOut, row)


@router.get("/budgets", summary="The project's budgets with their current window's usage and reservations")
async def list_budgets(session: Session, scope: Reader) -> list[BudgetOut]:
    return [from_row(BudgetOut, r) for r in await access.budgets_with_usage(session, scope.project)]
