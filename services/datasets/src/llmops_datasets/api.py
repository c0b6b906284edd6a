"""HTTP routes of the datasets service. Data stewards (and admins) write; ml-engineers and viewers read; nobody
sees a project outside their token's scope."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, Strict
from starlette.background import BackgroundTask

from llmops.auth import Permission, ProjectScope, Role, in_project
from llmops.errors import Problem
from llmops.http import CurrentRuntime, Session, get_settings
from llmops.types import Offset, RequestBody, VersionPath
from llmops.uploads import checked_upload, upload_body
from llmops_datasets import imports, queries, service
from llmops_datasets.formats import CONTENT_TYPES, FileType, Format
from llmops_datasets.ingest import split_rows
from llmops_datasets.options import UploadOptions
from llmops_datasets.parallel import IngestPool
from llmops_datasets.settings import DatasetsSettings
from llmops_schemas.splits import SplitConfig, row_digest

WRITE = Permission("datasets.write", {Role.DATA_STEWARD})
READ = Permission("datasets.read", {Role.DATA_STEWARD, Role.ML_ENGINEER, Role.VIEWER})

router = APIRouter(prefix="/projects/{project}/datasets", tags=["datasets"])
Writer = Annotated[ProjectScope, Depends(in_project(WRITE))]
Reader = Annotated[ProjectScope, Depends(in_project(READ))]
SettingsDep = Annotated[DatasetsSettings, Depends(get_settings)]


def _ingest_pool(request: Request) -> IngestPool | None:
    return request.app.state.ingest_pool  # the pool the service started, or None when it runs none


IngestPoolDep = Annotated[IngestPool | None, Depends(_ingest_pool)]
Name = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", description="dataset name")]


class DatasetIn(RequestBody):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$")
    format: Annotated[Format, Strict(False)]
    description: str = Field(default="", max_length=4000)


class DatasetOut(BaseModel):
    id: str
    project: str
    name: str
    format: Format
    description: str
    created_by: str
    created_at: datetime
    latest_version: int | None = None


class VersionOut(BaseModel):
    id: str
    version: int
    sha256: str
    uri: str
    size_bytes: int
    row_count: int
    stats: dict[str, Any]
    splits: dict[str, Any]
    cleaning: dict[str, Any]
    source_type: str
    invalid_rows_dropped: int
    errors: list[dict[str, Any]]
    parent_version_id: str | None
    diff: dict[str, int] | None
    created_by: str
    created_at: datetime
    deprecated_at: datetime | None
    deprecated_by: str | None
    deprecation_reason: str | None


class DatasetDetail(DatasetOut):
    versions: list[VersionOut]


def _dataset_out(row, latest: int | None = None) -> DatasetOut:
    return DatasetOut(
        **{k: getattr(row, k) for k in DatasetOut.model_fields if k != "latest_version"}, latest_version=latest
    )


def _version_out(row) -> VersionOut:
    return VersionOut(**{k: getattr(row, k) for k in VersionOut.model_fields})


@router.post("", status_code=201, summary="Create a dataset with a declared format")
async def create_dataset(body: DatasetIn, session: Session, runtime: CurrentRuntime, scope: Writer) -> DatasetOut:
    row = await service.create_dataset(
        session,
        runtime,
        project=scope.project,
        name=body.name,
        row_format=body.format,
        description=body.description,
        actor=scope.actor,
    )
    return _dataset_out(row)


@router.get("", summary="List and search the project's datasets")
async def list_datasets(
    session: Session,
    scope: Reader,
    q: Annotated[str | None, Query(max_length=200, description="search in names and descriptions")] = None,
    format: Format | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> list[DatasetOut]:
    rows = await queries.list_datasets(session, scope.project, search=q, row_format=format, limit=limit, offset=offset)
    return [_dataset_out(r, r.latest_version) for r in rows]


@router.get("/{name}", summary="A dataset and its versions")
async def show_dataset(name: Name, session: Session, scope: Reader) -> DatasetDetail:
    dataset = await service.get_dataset(session, scope.project, name)
    versions = [_version_out(v) for v in await queries.versions(session, scope.project, name)]
    latest = versions[-1].version if versions else None
    return DatasetDetail(**_dataset_out(dataset, latest).model_dump(), versions=versions)


@router.post(
    "/{name}/versions",
    status_code=201,
    summary="Upload a version (JSONL, CSV or Parquet body), validated, cleaned and stored",
    openapi_extra=upload_body(CONTENT_TYPES),
)
async def upload_version(
    name: Name,
    request: Request,
    response: Response,
    runtime: CurrentRuntime,
    scope: Writer,
    settings: SettingsDep,
    pool: IngestPoolDep,
    options: Annotated[UploadOptions, Query()],
) -> VersionOut:
    file_type = CONTENT_TYPES[checked_upload(request, CONTENT_TYPES, limit=settings.max_upload_bytes)]
    cleaning, split = options.configs()
    version, created = await service.upload_version(
        runtime,
        project=scope.project,
        name=name,
        chunks=request.stream(),
        file_type=file_type,
        cleaning=cleaning,
        split=split,
        keep_valid=options.keep_valid,
        limit=settings.max_upload_bytes,
        spool_dir=settings.spool_dir,
        actor=scope.actor,
        pool=pool,
        delimiter=options.delimiter,
    )
    if not created:
        response.status_code = 200  # the same content is already a version: nothing new was stored
    return _version_out(version)


class ImportIn(RequestBody, UploadOptions):
    """An import of an object already in the platform's object store, with the upload's cleaning and split options."""

    uri: str = Field(
        max_length=2000, description="s3://<the platform's bucket>/sha256/<xx>/<sha256>: a content address of the store"
    )
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="the sha256 the object must have")
    file_type: Annotated[FileType, Strict(False)] = FileType.JSONL
    format: Annotated[Format | None, Strict(False)] = Field(
        default=None, description="creates the dataset with this format when it does not exist"
    )
    description: str = Field(default="", max_length=4000, description="of a dataset the import creates")
    parent: int | None = Field(default=None, ge=1, le=2**31 - 1, description="the parent version (default: latest)")


@router.post(
    "/{name}/imports",
    status_code=201,
    summary="Import a version from the object store, cleaned as an upload",
    responses={200: {"model": VersionOut, "description": "the content is already a version: that version"}},
)
async def import_version(
    name: Name,
    body: ImportIn,
    response: Response,
    runtime: CurrentRuntime,
    scope: Writer,
    settings: SettingsDep,
    pool: IngestPoolDep,
) -> VersionOut:
    source = imports.ImportSource(
        uri=body.uri,
        file_type=body.file_type,
        options=UploadOptions(**body.model_dump(include=set(UploadOptions.model_fields))),
        sha256=body.sha256,
        row_format=body.format,
        description=body.description,
        parent=body.parent,
    )
    version, created = await imports.import_version(
        runtime,
        project=scope.project,
        name=name,
        source=source,
        limit=settings.max_upload_bytes,
        spool_dir=settings.spool_dir,
        actor=scope.actor,
        pool=pool,
    )
    if not created:
        response.status_code = 200  # the same content is already a version: nothing new was stored
    return _version_out(version)


@router.get("/{name}/versions/{version}", summary="One version: hash, stats, splits, cleaning report, diff")
async def show_version(name: Name, version: VersionPath, session: Session, scope: Reader) -> VersionOut:
    return _version_out((await service.get_version(session, scope.project, name, version))[1])


@router.get("/{name}/versions/{version}/preview", summary="The first rows of a version (or of one split)")
async def preview(
    name: Name,
    version: VersionPath,
    session: Session,
    runtime: CurrentRuntime,
    scope: Reader,
    settings: SettingsDep,
    rows: Annotated[int, Query(ge=1, le=1000)] = 20,
    split: Literal["train", "validation", "test"] | None = None,
) -> list[dict[str, Any]]:
    _, found = await service.get_version(session, scope.project, name, version)
    rows = min(rows, settings.preview_max_rows)
    keep = None
    if split is not None:
        config = _split_config(found)
        keep = lambda line: config.split_of(row_digest(line)) == split  # noqa: E731
    return [orjson.loads(line) for line in await runtime.store.first_lines(found.sha256, rows, keep=keep)]


@router.get(
    "/{name}/versions/{version}/download",
    summary="Download a version or a split (stream or presigned URL)",
    responses={
        200: {
            "description": "the rows as JSON Lines, or (presigned) a JSON object with the URL and sha256",
            "content": {"application/x-ndjson": {}, "application/json": {}},
        }
    },
)
async def download(
    name: Name,
    version: VersionPath,
    session: Session,
    runtime: CurrentRuntime,
    scope: Reader,
    split: Literal["train", "validation", "test"] | None = None,
    presigned: bool = False,
):
    dataset, found = await service.get_version(session, scope.project, name, version)
    if presigned:
        if split is not None:
            raise Problem(
                422,
                "invalid input: presigned",
                errors=[
                    {
                        "field": "presigned",
                        "location": "query",
                        "message": "splits are computed on download; a presigned URL is for the whole version",
                    }
                ],
            )
        return {"url": await runtime.store.presigned_url(found.sha256), "sha256": found.sha256}
    workdir = Path(tempfile.mkdtemp(prefix="llmops-download-"))
    path = workdir / "cleaned.jsonl"
    try:
        await runtime.store.download(found.sha256, path)
    except BaseException:
        shutil.rmtree(workdir, True)
        raise
    split_config = _split_config(found)

    def body():
        if split is None:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    yield chunk
        else:
            yield from split_rows(path, split_config, split)

    filename = f"{dataset.name}-v{version}{'-' + split if split else ''}.jsonl"
    return StreamingResponse(
        body(),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
        background=BackgroundTask(shutil.rmtree, workdir, True),
    )


class DeprecateIn(RequestBody):
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/{name}/versions/{version}/deprecate", summary="Deprecate a version: readable, refused for training")
async def deprecate(
    name: Name,
    version: VersionPath,
    body: DeprecateIn,
    session: Session,
    runtime: CurrentRuntime,
    scope: Writer,
) -> VersionOut:
    row = await service.deprecate(
        session,
        runtime,
        project=scope.project,
        name=name,
        version=version,
        reason=body.reason,
        actor=scope.actor,
    )
    return _version_out(row)


def _split_config(version) -> SplitConfig:
    return SplitConfig.of_version(version.splits)
