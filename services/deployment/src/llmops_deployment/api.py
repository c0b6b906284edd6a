"""HTTP routes of the deployment service: deployments (with the evaluation gate enforced) and lineage.

ml-engineers (and admins) deploy and stop; viewers read; only admins deploy a version past missing or failed gates
(``override_reason``, audited). Every route is scoped to a project the caller's token names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, model_validator

from llmops.http import CurrentRuntime, Session, from_row, get_settings
from llmops.openapi import problems
from llmops.types import JsonInt, Offset, RequestBody, UUIDPath, Version
from llmops_deployment import queries, service
from llmops_deployment.permissions import OVERRIDE, Reader, Writer
from llmops_deployment.settings import DeploymentSettings

router = APIRouter(prefix="/projects/{project}", tags=["deployment"])
SettingsDep = Annotated[DeploymentSettings, Depends(get_settings)]
NAME = r"^[a-z0-9][a-z0-9._-]{0,127}$"
Status = Literal["requested", "ready", "failed", "stopping", "stopped"]


# -- deployments -------------------------------------------------------------------------------------------------
class ModelChoice(RequestBody):
    name: str = Field(pattern=NAME)
    version: Version | None = None
    alias: str | None = Field(default=None, pattern=NAME, description="instead of a version: where it points")

    @model_validator(mode="after")
    def _version_or_alias(self) -> ModelChoice:
        if (self.version is None) == (self.alias is None):
            raise ValueError("name the model's version or its alias (one of them)")
        return self


class ExternalChoice(RequestBody):
    url: str = Field(max_length=2048, description="base URL of an OpenAI-compatible server (http or https)")
    model: str = Field(min_length=1, max_length=256, description="the model name the server is asked for")
    secret_ref: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]{0,127}$",
        description="the environment variable (of the gateway and workers) holding the server's key",
    )


class GenerationIn(RequestBody):
    """Defaults for requests that set none (a request's own values win)."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: JsonInt | None = Field(default=None, ge=1, le=131_072)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(default=None, max_length=8)
    seed: JsonInt | None = Field(default=None, ge=0, le=2**31 - 1)


class DeploymentIn(RequestBody):
    """A registered model version (by number or alias) on a backend of a pool, or an external server."""

    name: str = Field(pattern=NAME)
    model: ModelChoice | None = Field(default=None, description="the model version served (not for external)")
    external: ExternalChoice | None = Field(default=None, description="the server of an external backend")
    backend: Literal["transformers", "vllm", "tgi", "external"] = "transformers"
    pool: str = Field(default="cpu", pattern=NAME)
    replicas: JsonInt = Field(default=1, ge=1, le=64, description="at most the service's max_replicas")
    generation: GenerationIn = Field(default_factory=GenerationIn)
    override_reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="admins only: deploy although the version's gates are missing or failed (audited)",
    )


class ReplicaOut(BaseModel):
    replica: int
    status: str
    endpoint: str | None
    served_model: str | None
    worker: str | None
    attempt: int
    restarts: int
    last_error: str | None
    updated_at: datetime


class DeploymentOut(BaseModel):
    id: str
    project: str
    name: str
    backend: str
    pool: str
    replicas: int
    model_name: str | None
    model_version: int | None
    model_version_id: str | None
    model: dict[str, Any] | None
    external: dict[str, Any] | None
    generation: dict[str, Any]
    gates: list[dict[str, Any]]
    gate_override: bool
    override_reason: str | None
    status: str
    last_error: str | None
    requested_by: str
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None


class DeploymentDetail(DeploymentOut):
    replica_states: list[ReplicaOut] = Field(description="each replica: status, endpoint, worker, restarts, error")


async def _detail(session, project: str, deployment_id: str) -> DeploymentDetail:
    row = await service.get_deployment(session, project, deployment_id)
    replicas = [from_row(ReplicaOut, r) for r in await queries.replicas_of(session, project, deployment_id)]
    return DeploymentDetail(**from_row(DeploymentOut, row).model_dump(), replica_states=replicas)


@router.post(
    "/deployments",
    status_code=201,
    summary="Deploy a model version (its evaluation gates must have passed) or an external server",
    responses=problems(403, 409),
)
async def create_deployment(
    body: DeploymentIn, session: Session, runtime: CurrentRuntime, scope: Writer, settings: SettingsDep
) -> DeploymentDetail:
    deployment_id = await service.request_deployment(
        session,
        runtime,
        settings,
        project=scope.project,
        body=body.model_dump(mode="json", exclude={"generation"}) | {"generation": _generation(body)},
        may_override=OVERRIDE.granted_to(scope.principal.roles),
        actor=scope.actor,
    )
    return await _detail(session, scope.project, deployment_id)


def _generation(body: DeploymentIn) -> dict[str, Any]:
    return body.generation.model_dump(mode="json", exclude_none=True)


@router.get("/deployments", summary="The project's deployments, newest first")
async def list_deployments(
    session: Session,
    scope: Reader,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[DeploymentOut]:
    rows = await queries.list_deployments(session, scope.project, status=status, limit=limit, offset=offset)
    return [from_row(DeploymentOut, row) for row in rows]


DeploymentId = UUIDPath


@router.get("/deployments/{deployment_id}", summary="One deployment with its replicas", responses=problems(404))
async def show_deployment(deployment_id: DeploymentId, session: Session, scope: Reader) -> DeploymentDetail:
    return await _detail(session, scope.project, deployment_id)


class StopIn(RequestBody):
    reason: str = Field(default="", max_length=2000)


@router.post(
    "/deployments/{deployment_id}/stop",
    summary="Stop a deployment (its workers drain in-flight requests first)",
    responses=problems(404, 409),
)
async def stop_deployment(
    deployment_id: DeploymentId,
    session: Session,
    runtime: CurrentRuntime,
    scope: Writer,
    body: StopIn | None = None,
) -> DeploymentDetail:
    await service.stop_deployment(
        session,
        runtime,
        project=scope.project,
        deployment_id=deployment_id,
        reason=body.reason if body else "",
        actor=scope.actor,
    )
    return await _detail(session, scope.project, deployment_id)


class LogLine(BaseModel):
    id: int
    replica: int
    at: datetime
    line: str


@router.get(
    "/deployments/{deployment_id}/logs",
    summary="A deployment's backend log lines (page with after=<last id>)",
    responses=problems(404),
)
async def deployment_logs(
    deployment_id: DeploymentId,
    session: Session,
    scope: Reader,
    after: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[LogLine]:
    await service.get_deployment(session, scope.project, deployment_id)  # 404 for an unknown deployment
    rows = await queries.logs_of(session, scope.project, deployment_id, after=after, limit=limit)
    return [from_row(LogLine, row) for row in rows]


# -- lineage -----------------------------------------------------------------------------------------------------
class DeploymentLineage(BaseModel):
    id: str
    name: str
    backend: str
    pool: str
    status: str
    external: dict[str, Any] | None
    gates: list[dict[str, Any]] = Field(description="the gate checks that allowed it (or were overridden)")
    gate_override: bool
    override_reason: str | None
    requested_by: str
    created_at: datetime


class ModelLineage(BaseModel):
    model_version_id: str
    name: str
    version: int
    kind: str
    manifest_sha256: str
    merged_manifest_sha256: str | None
    registered_at: datetime
    training_job_id: str
    method: str | None
    base_model: dict[str, Any] | None = Field(description="the base model with its hash and resolved revision")
    dataset: dict[str, Any] | None = Field(description="the dataset version trained on, with its sha256")
    prompt: dict[str, Any] | None = Field(description="the prompt version the training examples were rendered with")


class LineageOut(BaseModel):
    request_id: str
    project: str
    route: str
    status: str
    shadow: bool
    at: datetime
    prompt_version_id: str | None = Field(description="the prompt version the request was rendered with")
    model_hash: str | None
    deployment_id: str | None
    model_version_id: str | None
    deployment: DeploymentLineage | None
    model_version: ModelLineage | None


RequestId = Annotated[str, PathParam(min_length=1, max_length=128)]


@router.get(
    "/inferences/{request_id}/lineage",
    summary="Where an answer came from: deployment and its gates, model version, training job, data, base model",
    responses=problems(404),
)
async def inference_lineage(request_id: RequestId, session: Session, scope: Reader) -> LineageOut:
    return LineageOut.model_validate(await service.lineage(session, scope.project, request_id))
