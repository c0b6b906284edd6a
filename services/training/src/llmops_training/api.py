"""HTTP routes of the training service: base models, training jobs and the model registry.

ml-engineers (and admins) register base models, start and cancel jobs and move aliases; viewers read; every route
is scoped to a project the caller's token names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, model_validator

from llmops.auth import Permission, Principal, Role, require_project, requires
from llmops.errors import Problem
from llmops.http import CurrentRuntime, Session, actor_of, from_row
from llmops.types import Offset, RequestBody, UUIDPath, Version
from llmops_training import repository, service

WRITE = Permission("training.write", {Role.ML_ENGINEER})
READ = Permission("training.read", {Role.ML_ENGINEER, Role.VIEWER})

router = APIRouter(prefix="/projects/{project}", tags=["training"])
Writer = Annotated[Principal, Depends(requires(WRITE))]
Reader = Annotated[Principal, Depends(requires(READ))]
NAME = r"^[a-z0-9][a-z0-9._-]{0,127}$"
Name = Annotated[str, PathParam(pattern=NAME)]
Project = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
TAR_TYPES = ("application/x-tar", "application/tar")


# -- base models -------------------------------------------------------------------------------------------------
class HubModelIn(RequestBody):
    name: str = Field(pattern=NAME)
    hub_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$", max_length=200)
    revision: str | None = Field(default=None, max_length=200, description="branch, tag or commit (default main)")


class BaseModelOut(BaseModel):
    id: str
    project: str
    name: str
    source: str
    manifest_sha256: str | None
    size_bytes: int | None
    hub_id: str | None
    revision: str | None
    architecture: str | None
    parameters: int | None
    created_by: str
    created_at: datetime


@router.post("/base-models", status_code=201, summary="Register a base model by hub id (resolved by the worker)")
async def register_hub_model(
    project: Project, body: HubModelIn, request: Request, session: Session, runtime: CurrentRuntime, principal: Writer
) -> BaseModelOut:
    await require_project(request, principal, project)
    row = await service.register_hub_model(
        session,
        runtime,
        project=project,
        name=body.name,
        hub_id=body.hub_id,
        revision=body.revision,
        actor=actor_of(request, principal),
    )
    return from_row(BaseModelOut, row)


@router.post(
    "/base-models/{name}/upload",
    status_code=201,
    summary="Register a base model from a tar of its Hugging Face directory (content-addressed)",
    openapi_extra={
        "requestBody": {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in TAR_TYPES}}
    },
)
async def upload_base_model(
    project: Project, name: Name, request: Request, runtime: CurrentRuntime, principal: Writer
) -> BaseModelOut:
    await require_project(request, principal, project)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in TAR_TYPES:
        raise Problem(415, f"unsupported content type {media or '(none)'!r}; send {TAR_TYPES[0]}")
    settings = request.app.state.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise Problem(413, f"the upload ({declared} bytes) is larger than the limit of {settings.max_upload_bytes}")
    row = await service.register_uploaded_model(
        runtime, settings, project=project, name=name, chunks=request.stream(), actor=actor_of(request, principal)
    )
    return from_row(BaseModelOut, row)


@router.get("/base-models", summary="The project's base models")
async def list_base_models(
    project: Project, request: Request, session: Session, principal: Reader
) -> list[BaseModelOut]:
    await require_project(request, principal, project)
    return [from_row(BaseModelOut, row) for row in await repository.list_base_models(session, project)]


@router.get("/base-models/{name}", summary="One base model")
async def show_base_model(
    project: Project, name: Name, request: Request, session: Session, principal: Reader
) -> BaseModelOut:
    await require_project(request, principal, project)
    return from_row(BaseModelOut, await service.get_base_model(session, project, name))


# -- jobs --------------------------------------------------------------------------------------------------------
class Hyperparameters(RequestBody):
    epochs: float = Field(default=1.0, gt=0, le=100)
    max_steps: int | None = Field(default=None, ge=1, le=10_000_000, description="overrides epochs when set")
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    batch_size: int = Field(default=8, ge=1, le=4096)
    gradient_accumulation: int = Field(default=1, ge=1, le=1024)
    lora_rank: int = Field(default=8, ge=1, le=1024)
    lora_alpha: int = Field(default=16, ge=1, le=4096)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        default=None, min_length=1, max_length=64, description="LoRA target modules (default: every linear layer)"
    )
    max_seq_length: int = Field(default=512, ge=8, le=131_072)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    checkpoint_every: int | None = Field(default=None, ge=1, le=10_000_000, description="steps between checkpoints")
    bf16: bool = False
    merge: bool = Field(default=False, description="also store the base model merged with the adapter (LoRA)")


class DatasetChoice(RequestBody):
    name: str = Field(pattern=NAME)
    version: Version
    split: Literal["train", "validation", "test"] = "train"


class PromptChoice(RequestBody):
    name: str = Field(pattern=NAME)
    version: Version


class JobIn(RequestBody):
    base_model: str = Field(pattern=NAME)
    dataset: DatasetChoice
    prompt: PromptChoice | None = None
    method: Literal["full", "lora", "qlora"] = "lora"
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    pool: str = Field(default="cpu", pattern=NAME)
    model_name: str | None = Field(default=None, pattern=NAME, description="the registered model (default base-method)")

    @model_validator(mode="after")
    def _lora_settings_need_lora(self) -> JobIn:
        if self.method == "full" and self.hyperparameters.merge:
            raise ValueError("merge applies to lora and qlora jobs only")
        return self


class JobOut(BaseModel):
    id: str
    project: str
    model_name: str
    status: str
    pool: str
    method: str
    hyperparameters: dict[str, Any]
    base_model_id: str
    dataset_version_id: str
    prompt_version_id: str | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    attempt: int
    resumed_from_step: int | None
    step: int
    max_steps: int | None
    progress: dict[str, Any] | None
    metrics: dict[str, Any] | None
    error: str | None
    cancel_requested_by: str | None
    model_version_id: str | None


@router.post("/training/jobs", status_code=201, summary="Start a fine-tuning job (full, lora or qlora)")
async def start_job(
    project: Project, body: JobIn, request: Request, session: Session, runtime: CurrentRuntime, principal: Writer
) -> JobOut:
    await require_project(request, principal, project)
    row = await service.request_job(
        session,
        runtime,
        request.app.state.settings,
        project=project,
        spec=body.model_dump(mode="json"),
        actor=actor_of(request, principal),
    )
    return from_row(JobOut, row)


@router.get("/training/jobs", summary="The project's jobs, newest first")
async def list_jobs(
    project: Project,
    request: Request,
    session: Session,
    principal: Reader,
    status: Annotated[Literal["queued", "running", "completed", "failed", "cancelled"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[JobOut]:
    await require_project(request, principal, project)
    rows = await repository.list_jobs(session, project, status=status, limit=limit, offset=offset)
    return [from_row(JobOut, row) for row in rows]


JobId = UUIDPath


@router.get("/training/jobs/{job_id}", summary="One job: status, progress, metrics, error")
async def show_job(project: Project, job_id: JobId, request: Request, session: Session, principal: Reader) -> JobOut:
    await require_project(request, principal, project)
    return from_row(JobOut, await service.get_job(session, project, job_id))


@router.post("/training/jobs/{job_id}/cancel", summary="Cancel a job (a running one stops at its next step)")
async def cancel_job(
    project: Project, job_id: JobId, request: Request, session: Session, runtime: CurrentRuntime, principal: Writer
) -> JobOut:
    await require_project(request, principal, project)
    row = await service.cancel_job(session, runtime, project=project, job_id=job_id, actor=actor_of(request, principal))
    return from_row(JobOut, row)


class LogLine(BaseModel):
    id: int
    level: str
    message: str
    worker: str | None
    at: datetime


@router.get("/training/jobs/{job_id}/logs", summary="A job's log lines (page with after=<last id>)")
async def job_logs(
    project: Project,
    job_id: JobId,
    request: Request,
    session: Session,
    principal: Reader,
    after: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[LogLine]:
    await require_project(request, principal, project)
    job = await service.get_job(session, project, job_id)
    return [from_row(LogLine, row) for row in await repository.logs_of(session, job.id, after=after, limit=limit)]


class StepMetrics(BaseModel):
    step: int
    epoch: float | None
    loss: float | None
    learning_rate: float | None
    tokens_per_second: float | None


@router.get("/training/jobs/{job_id}/metrics", summary="A job's figures at every step (the loss curve)")
async def job_metrics(
    project: Project, job_id: JobId, request: Request, session: Session, principal: Reader
) -> list[StepMetrics]:
    await require_project(request, principal, project)
    job = await service.get_job(session, project, job_id)
    return [from_row(StepMetrics, row) for row in await repository.job_metrics_of(session, job.id)]


# -- model registry ----------------------------------------------------------------------------------------------
class ModelVersionOut(BaseModel):
    id: str
    project: str
    name: str
    version: int
    job_id: str
    kind: str
    base_model_id: str
    manifest_sha256: str
    merged_manifest_sha256: str | None
    metrics: dict[str, Any]
    created_at: datetime


class AliasOut(BaseModel):
    alias: str
    version: int
    updated_by: str
    updated_at: datetime


class ModelOut(BaseModel):
    project: str
    name: str
    versions: list[ModelVersionOut]
    aliases: list[AliasOut]


@router.get("/models", summary="The project's registered models and their versions")
async def list_models(project: Project, request: Request, session: Session, principal: Reader) -> list[ModelOut]:
    await require_project(request, principal, project)
    by_name: dict[str, list] = {}
    for row in await repository.list_model_versions(session, project):
        by_name.setdefault(row.name, []).append(from_row(ModelVersionOut, row))
    return [
        ModelOut(
            project=project,
            name=name,
            versions=versions,
            aliases=[from_row(AliasOut, a) for a in await repository.aliases_of(session, project, name)],
        )
        for name, versions in by_name.items()
    ]


@router.get("/models/{name}", summary="One model: its versions and aliases")
async def show_model(project: Project, name: Name, request: Request, session: Session, principal: Reader) -> ModelOut:
    await require_project(request, principal, project)
    versions = await repository.list_model_versions(session, project, name)
    if not versions:
        raise Problem(404, f"no model named {name!r} in project {project!r}")
    aliases = await repository.aliases_of(session, project, name)
    return ModelOut(
        project=project,
        name=name,
        versions=[from_row(ModelVersionOut, v) for v in versions],
        aliases=[from_row(AliasOut, a) for a in aliases],
    )


VersionRef = Annotated[
    str, PathParam(pattern=r"^([1-9][0-9]{0,8}|[a-z][a-z0-9._-]{0,63})$", description="number or alias")
]


class ModelVersionDetail(ModelVersionOut):
    lineage: dict[str, Any]
    files: dict[str, Any]


@router.get("/models/{name}/versions/{version}", summary="One model version (by number or alias) with its lineage")
async def show_model_version(
    project: Project,
    name: Name,
    version: VersionRef,
    request: Request,
    session: Session,
    runtime: CurrentRuntime,
    principal: Reader,
) -> ModelVersionDetail:
    await require_project(request, principal, project)
    row = await service.get_model_version(session, project, name, version)
    manifest = await service.artifact_files(runtime, row.manifest_sha256)
    return ModelVersionDetail(**from_row(ModelVersionOut, row).model_dump(), lineage=row.lineage, files=manifest)


@router.get("/models/{name}/versions/{version}/lineage", summary="Where a model version came from, completely")
async def model_lineage(
    project: Project, name: Name, version: VersionRef, request: Request, session: Session, principal: Reader
) -> dict[str, Any]:
    await require_project(request, principal, project)
    row = await service.get_model_version(session, project, name, version)
    return await service.lineage(session, row)


class AliasIn(RequestBody):
    version: Version
    reason: str = Field(min_length=1, max_length=2000)


AliasName = Annotated[str, PathParam(pattern=r"^[a-z][a-z0-9._-]{0,63}$")]


@router.put("/models/{name}/aliases/{alias}", summary="Point an alias (e.g. candidate) at a version")
async def move_alias(
    project: Project,
    name: Name,
    alias: AliasName,
    body: AliasIn,
    request: Request,
    session: Session,
    runtime: CurrentRuntime,
    principal: Writer,
) -> AliasOut:
    await require_project(request, principal, project)
    row = await service.move_alias(
        session,
        runtime,
        project=project,
        name=name,
        alias=alias,
        version=body.version,
        reason=body.reason,
        actor=actor_of(request, principal),
    )
    return from_row(AliasOut, row)


class AliasMoveOut(BaseModel):
    from_version: int | None
    to_version: int
    moved_by: str
    reason: str
    moved_at: datetime


@router.get("/models/{name}/aliases/{alias}/history", summary="Every move of an alias")
async def alias_history(
    project: Project, name: Name, alias: AliasName, request: Request, session: Session, principal: Reader
) -> list[AliasMoveOut]:
    await require_project(request, principal, project)
    return [from_row(AliasMoveOut, row) for row in await repository.alias_history(session, project, name, alias)]
