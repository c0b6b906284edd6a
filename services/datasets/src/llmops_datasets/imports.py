"""Importing a version from an object already in the platform's object store, by API or by event: the object's bytes
go through the upload's own path (:func:`llmops_datasets.service.upload_version`), so an import is validated, cleaned,
split, redacted and de-duplicated exactly as an upload of the same bytes.

A URI a caller sends can name nothing but a content-addressed object of the platform's own bucket
(``s3://<bucket>/sha256/<xx>/<sha256>``, :meth:`llmops.storage.ObjectStore.sha256_of_uri`): no other bucket, key,
scheme or path is ever read, and nothing is fetched from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem
from llmops.logging import get_logger
from llmops.runtime import Actor, Runtime
from llmops.storage import IntegrityError as CorruptObject
from llmops.storage import ObjectNotFound
from llmops_datasets import repository, service
from llmops_datasets.formats import FileType, Format
from llmops_datasets.options import UploadOptions
from llmops_datasets.parallel import IngestPool
from llmops_schemas.events import DatasetImportFailed, DatasetImportRequested

log = get_logger(__name__)


@dataclass(frozen=True)
class ImportSource:
    """What to import and how: the object's URI (and the sha256 it must have), its file type, the cleaning and split
    options, and the format and description that create the dataset when it does not exist (None: it must exist)."""

    uri: str
    file_type: FileType
    options: UploadOptions
    sha256: str | None = None
    row_format: Format | None = None
    description: str = ""
    parent: int | None = None


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        f"invalid input: {field}: {message}",
        type_="urn:llmops:problem:validation",
        errors=[{"field": field, "location": "body", "message": message}],
    )


async def import_version(
    runtime: Runtime,
    *,
    project: str,
    name: str,
    source: ImportSource,
    limit: int,
    spool_dir: Path | None,
    actor: Actor,
    pool: IngestPool | None = None,
    import_id: str | None = None,
) -> tuple[Row, bool]:
    """Import the object at ``source.uri`` as a version of dataset ``name`` (created first when missing and a format
    is given); returns (version, created) as an upload does. A refused URI, a missing object or a sha256 other than
    the URI's is a 422 naming the field; an object over ``limit`` bytes is a 413, told before it is read."""
    try:
        sha256 = runtime.store.sha256_of_uri(source.uri)
    except ValueError as exc:
        raise _invalid("uri", str(exc)) from exc
    if source.sha256 is not None and source.sha256 != sha256:
        raise _invalid("sha256", f"the object at uri has sha256 {sha256}, not {source.sha256}")
    cleaning, split = source.options.configs(location="body")  # refused before anything is read or created
    try:
        size = await runtime.store.size_of(sha256)
    except ObjectNotFound as exc:
        raise _invalid("uri", "no object is stored at this uri") from exc
    if size > limit:
        raise Problem(413, f"the object is larger than the limit of {limit} bytes")
    await _ensure_dataset(runtime, project, name, source, actor)
    try:
        return await service.upload_version(
            runtime,
            project=project,
            name=name,
            chunks=runtime.store.stream(sha256),
            file_type=source.file_type,
            cleaning=cleaning,
            split=split,
            keep_valid=source.options.keep_valid,
            limit=limit,
            spool_dir=spool_dir,
            actor=actor,
            pool=pool,
            delimiter=source.options.delimiter,
            parent_version=source.parent,
            import_id=import_id,
        )
    except CorruptObject as exc:
        raise _invalid("uri", f"the object does not hash to its address: {exc}") from exc


async def _ensure_dataset(runtime: Runtime, project: str, name: str, source: ImportSource, actor: Actor) -> None:
    async with runtime.db.sessions() as session:
        dataset = await repository.find_dataset(session, project, name)
    if dataset is None and source.row_format is not None:
        try:
            async with runtime.db.transaction() as session:
                await service.create_dataset(
                    session,
                    runtime,
                    project=project,
                    name=name,
                    row_format=source.row_format,
                    description=source.description,
                    actor=actor,
                )
            return
        except (Problem, IntegrityError):  # created meanwhile: check its format as any existing one's
            async with runtime.db.sessions() as session:
                dataset = await repository.find_dataset(session, project, name)
    if dataset is None:
        raise Problem(404, f"no dataset named {name!r} in project {project!r} (give a format to create it)")
    if source.row_format is not None and dataset.format != source.row_format.value:
        raise _invalid("format", f"dataset {name!r} has format {dataset.format}, not {source.row_format.value}")


async def import_requested(
    session: AsyncSession,
    runtime: Runtime,
    request: DatasetImportRequested,
    *,
    limit: int,
    spool_dir: Path | None,
    actor: Actor,
    pool: IngestPool | None = None,
) -> None:
    """Answer an import requested by event, once per (project, import_id): ``dataset.version.created`` with the
    import_id (a new version, or the existing one of the same content), or ``dataset.import.failed`` when the request
    or its file is refused. An outage or a failure worth retrying (a 5xx, a concurrent version) is raised: the
    consumer retries it; nothing is answered meanwhile. ``session`` is the consumer's transaction."""
    if await repository.find_import(session, request.project, request.import_id) is not None:
        log.info("dataset.import.repeated", import_id=request.import_id)
        return
    try:
        options = UploadOptions.model_validate(request.options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        return await _failed(session, runtime, request, actor, f"invalid options: {where}: {first['msg']}")
    source = ImportSource(
        uri=request.uri,
        file_type=FileType(request.file_type),
        options=options,
        sha256=request.sha256,
        row_format=Format(request.format),
        description=request.description,
        parent=request.parent,
    )
    try:
        version, _ = await import_version(
            runtime,
            project=request.project,
            name=request.dataset,
            source=source,
            limit=limit,
            spool_dir=spool_dir,
            actor=actor,
            pool=pool,
            import_id=request.import_id,
        )
    except Problem as exc:
        if exc.status >= 500 or exc.status == 409:
            raise
        return await _failed(session, runtime, request, actor, exc.detail)
    if await repository.find_import(session, request.project, request.import_id) is None:
        # The content already was a version: it is announced again, answering this import.
        dataset = await service.get_dataset(session, request.project, request.dataset)
        await repository.insert_import(
            session,
            {
                "import_id": request.import_id,
                "project": request.project,
                "dataset": dataset.name,
                "version_id": version.id,
            },
        )
        event = service.version_event(dataset, version, request.import_id)
        await add_to_outbox(session, runtime.event(event, subject=dataset.id, actor=actor, project=dataset.project))
    log.info("dataset.imported", import_id=request.import_id, dataset=request.dataset, version=version.version)


async def _failed(
    session: AsyncSession, runtime: Runtime, request: DatasetImportRequested, actor: Actor, reason: str
) -> None:
    log.info("dataset.import.failed", import_id=request.import_id, reason=reason)
    await repository.insert_import(
        session,
        {"import_id": request.import_id, "project": request.project, "dataset": request.dataset, "failure": reason},
    )
    event = DatasetImportFailed(
        import_id=request.import_id, project=request.project, dataset=request.dataset, reason=reason[:4000]
    )
    await add_to_outbox(session, runtime.event(event, subject=request.dataset, actor=actor, project=request.project))
