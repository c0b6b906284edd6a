"""HTTP routes of the training service: base models, training jobs and the model registry.

ml-engineers (and admins) register base models, start and cancel jobs and move aliases; viewers read; every route
is scoped to a project the caller's token names.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, model_validator

from llmops.auth import Permission, ProjectScope, Role, in_project
from llmops.errors import Problem
from llmops.http import CurrentRuntime, Session, from_row, get_settings
from llmops.openapi import problems
from llmops.types import Offset, RequestBody, UUIDPath, Version
from llmops.uploads import checked_upload, upload_body
from llmops_training import downloads, queries, service
from llmops_training.settings import TrainingSettings

WRITE = Permission("training.write", {Role.ML_ENGINEER})
READ = Permission("training.read", {Role.ML_ENGINEER, Role.VIEWER})

router = APIRouter(prefix="/projects/{project}", tags=["training"])
Writer = Annotated[ProjectScope, Depends(in_project(WRITE))]
Reader = Annotated[ProjectScope, Depends(in_project(READ))]
SettingsDep = Annotated[TrainingSettings, Depends(get_settings)]
NAME = r"^[a-z0-9][a-z0-9._-]{0,127}$"
Name = Annotated[str, PathParam(pattern=NAME)]
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
    body: HubModelIn, session: Session, runtime: CurrentRuntime, scope: Writer
) -> BaseModelOut:
    row = await service.register_hub_model(
        session,
        runtime,
        project=scope.project,
        name=body.name,
        hub_id=body.hub_id,
        revision=body.revision,
        actor=scope.actor,
    )
    return from_row(BaseModelOut, row)


@router.post(
    "/base-models/{name}/upload",
    status_code=201,
    summary="Register a base model from a tar of its Hugging Face directory (content-addressed)",
    openapi_extra=upload_body(TAR_TYPES),
)
async def upload_base_model(
    name: Name, request: Request, runtime: CurrentRuntime, scope: Writer, settings: SettingsDep
) -> BaseModelOut:
    checked_upload(request, TAR_TYPES, limit=settings.max_upload_bytes)
    row = await service.register_uploaded_model(
        runtime, settings, project=scope.project, name=name, chunks=request.stream(), actor=scope.actor
    )
    return from_row(BaseModelOut, row)


@router.get("/base-models", summary="The project's base models")
async def list_base_models(session: Session, scope: Reader) -> list[BaseModelOut]:
    return [from_row(BaseModelOut, row) for row in await queries.list_base_models(session, scope.project)]


@router.get("/base-models/{name}", summary="One base model")
async def show_base_model(name: Name, session: Session, scope: Reader) -> BaseModelOut:
    return from_row(BaseModelOut, await service.get_base_model(session, scope.project, name))


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
    body: JobIn, session: Session, runtime: CurrentRuntime, scope: Writer, settings: SettingsDep
) -> JobOut:
    row = await service.request_job(
        session,
        runtime,
        settings,
        project=scope.project,
        spec=body.model_dump(mode="json"),
        actor=scope.actor,
    )
    return from_row(JobOut, row)


@router.get("/training/jobs", summary="The project's jobs, newest first")
async def list_jobs(
    session: Session,
    scope: Reader,
    status: Annotated[Literal["queued", "running", "completed", "failed", "cancelled"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[JobOut]:
    rows = await queries.list_jobs(session, scope.project, status=status, limit=limit, offset=offset)
    return [from_row(JobOut, row) for row in rows]


JobId = UUIDPath


@router.get("/training/jobs/{job_id}", summary="One job: status, progress, metrics, error")
async def show_job(job_id: JobId, session: Session, scope: Reader) -> JobOut:
    return from_row(JobOut, await service.get_job(session, scope.project, job_id))


@router.post("/training/jobs/{job_id}/cancel", summary="Cancel a job (a running one stops at its next step)")
async def cancel_job(job_id: JobId, session: Session, runtime: CurrentRuntime, scope: Writer) -> JobOut:
    row = await service.cancel_job(session, runtime, project=scope.project, job_id=job_id, actor=scope.actor)
    return from_row(JobOut, row)


class LogLine(BaseModel):
    id: int
    level: str
    message: str
    worker: str | None
    at: datetime


@router.get("/training/jobs/{job_id}/logs", summary="A job's log lines (page with after=<last id>)")
async def job_logs(
    job_id: JobId,
    session: Session,
    scope: Reader,
    after: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[LogLine]:
    await service.get_job(session, scope.project, job_id)  # 404 for an unknown job
    rows = await queries.logs_of(session, scope.project, job_id, after=after, limit=limit)
    return [from_row(LogLine, row) for row in rows]


class StepMetrics(BaseModel):
    step: int
    epoch: float | None
    loss: float | None
    learning_rate: float | None
    tokens_per_second: float | None


@router.get("/training/jobs/{job_id}/metrics", summary="A job's figures at every step (the loss curve)")
async def job_metrics(job_id: JobId, session: Session, scope: Reader) -> list[StepMetrics]:
    await service.get_job(session, scope.project, job_id)  # 404 for an unknown job
    return [from_row(StepMetrics, row) for row in await queries.job_metrics_of(session, scope.project, job_id)]


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
async def list_models(session: Session, scope: Reader) -> list[ModelOut]:
    by_name: dict[str, list] = {}
    for row in await queries.model_versions_of(session, scope.project):
        by_name.setdefault(row.name, []).append(from_row(ModelVersionOut, row))
    aliases: dict[str, list] = {}
    for row in await queries.aliases_of(session, scope.project):  # every model's in one query, not one per model
        aliases.setdefault(row.name, []).append(from_row(AliasOut, row))
    return [
        ModelOut(project=scope.project, name=name, versions=versions, aliases=aliases.get(name, []))
        for name, versions in by_name.items()
    ]


@router.get("/models/{name}", summary="One model: its versions and aliases")
async def show_model(name: Name, session: Session, scope: Reader) -> ModelOut:
    versions = await queries.model_versions_of(session, scope.project, name)
    if not versions:
        raise Problem(404, f"no model named {name!r} in project {scope.project!r}")
    aliases = await queries.aliases_of(session, scope.project, name)
    return ModelOut(
        project=scope.project,
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
    name: Name,
    version: VersionRef,
    session: Session,
    runtime: CurrentRuntime,
    scope: Reader,
) -> ModelVersionDetail:
    row = await service.get_model_version(session, scope.project, name, version)
    manifest = await service.artifact_files(runtime, row.manifest_sha256)
    return ModelVersionDetail(**from_row(ModelVersionOut, row).model_dump(), lineage=row.lineage, files=manifest)


class FileOut(BaseModel):
    path: str = Field(description="relative path in the model directory (POSIX)")
    sha256: str
    size: int
    url: str = Field(description="presigned GET URL, valid until expires_at")


class BaseModelFiles(BaseModel):
    name: str
    manifest_sha256: str | None = Field(description="an uploaded base's content hash (None for a hub model)")
    hub_id: str | None
    revision: str | None = Field(description="a hub model's revision (the commit training resolved, when known)")
    files: list[FileOut] = Field(description="an uploaded base's files (empty for a hub model)")


class MergedFiles(BaseModel):
    manifest_sha256: str
    files: list[FileOut]


class ModelFilesOut(BaseModel):
    model: str
    version: int
    kind: Literal["adapter", "full"]
    manifest_sha256: str
    expires_at: datetime = Field(description="when the URLs stop working")
    files: list[FileOut]
    base_model: BaseModelFiles
    merged: MergedFiles | None = Field(description="the base merged with the adapter, when training stored it")


@router.get(
    "/models/{name}/versions/{version}/files",
    summary="A model version's files (and its base's, and the merged model's) with short-lived download URLs",
    responses=problems(404),
)
async def model_version_files(
    name: Name, version: VersionRef, session: Session, runtime: CurrentRuntime, scope: Reader, settings: SettingsDep
) -> ModelFilesOut:
    found = await downloads.model_version_files(
        session,
        runtime,
        project=scope.project,
        name=name,
        version=version,
        expires=timedelta(seconds=settings.download_url_seconds),
    )
    return ModelFilesOut.model_validate(found)


@router.get("/models/{name}/versions/{version}/lineage", summary="Where a model version came from, completely")
async def model_lineage(name: Name, version: VersionRef, session: Session, scope: Reader) -> dict[str, Any]:
    row = await service.get_model_version(session, scope.project, name, version)
    return await service.lineage(session, row)


class AliasIn(RequestBody):
    version: Version
    reason: str = Field(min_length=1, max_length=2000)


AliasName = Annotated[str, PathParam(pattern=r"^[a-z][a-z0-9._-]{0,63}$")]


@router.put("/models/{name}/aliases/{alias}", summary="Point an alias (e.g. candidate) at a version")
async def move_alias(
    name: Name,
    alias: AliasName,
    body: AliasIn,
    session: Session,
    runtime: CurrentRuntime,
    scope: Writer,
) -> AliasOut:
    row = await service.move_alias(
        session,
        runtime,
        project=scope.project,
        name=name,
        alias=alias,
        version=body.version,
        reason=body.reason,
        actor=scope.actor,
    )
    return from_row(AliasOut, row)


class AliasMoveOut(BaseModel):
    from_version: int | None
    to_version: int
    moved_by: str
    reason: str
    moved_at: datetime


@router.get("/models/{name}/aliases/{alias}/history", summary="Every move of an alias")
async def alias_history(name: Name, alias: AliasName, session: Session, scope: Reader) -> list[AliasMoveOut]:
    return [from_row(AliasMoveOut, row) for row in await queries.alias_history(session, scope.project, name, alias)]
