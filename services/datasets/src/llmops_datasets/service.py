"""The datasets service's use cases. Errors are :class:`llmops.errors.Problem`, answered as RFC 9457 documents.

Uploading a version is long work (a file of gigabytes): it runs outside any database transaction, in a worker thread,
and only its short bookkeeping steps open transactions of their own.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem
from llmops.logging import get_logger
from llmops.memory import release_free_memory
from llmops.object_writer import ObjectWriter
from llmops.runtime import Actor, Runtime, spool
from llmops_datasets import repository
from llmops_datasets.arriving import ArrivingFile
from llmops_datasets.digests import diff
from llmops_datasets.formats import FileType, Format, NotUtf8
from llmops_datasets.ingest import CleaningConfig, Output, SplitConfig, ingest, ingest_jsonl
from llmops_datasets.parallel import IngestPool, StreamedIngest, WorkerFailed
from llmops_datasets.report import IngestResult
from llmops_schemas.events import DatasetCreated, DatasetVersionCreated, DatasetVersionDeprecated

log = get_logger(__name__)


# -- datasets ----------------------------------------------------------------------------------------------------
async def create_dataset(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    row_format: Format,
    description: str,
    actor: Actor,
) -> Row:
    if await repository.find_dataset(session, project, name) is not None:
        raise Problem(409, f"a dataset named {name!r} already exists in project {project!r}")
    dataset_id = str(uuid.uuid4())
    await repository.insert_dataset(
        session,
        {
            "id": dataset_id,
            "project": project,
            "name": name,
            "format": row_format.value,
            "description": description,
            "created_by": actor.subject,
        },
    )
    event = DatasetCreated(
        dataset_id=dataset_id, project=project, name=name, format=row_format.value, description=description
    )
    await add_to_outbox(session, runtime.event(event, subject=dataset_id, actor=actor, project=project))
    return await repository.find_dataset(session, project, name)


async def get_dataset(session: AsyncSession, project: str, name: str) -> Row:
    dataset = await repository.find_dataset(session, project, name)
    if dataset is None:
        raise Problem(404, f"no dataset named {name!r} in project {project!r}")
    return dataset


async def get_version(session: AsyncSession, project: str, name: str, version: int) -> tuple[Row, Row]:
    dataset = await get_dataset(session, project, name)
    found = await repository.find_version(session, dataset.id, version)
    if found is None:
        raise Problem(404, f"dataset {name!r} has no version {version}")
    return dataset, found


async def deprecate(
    session: AsyncSession, runtime: Runtime, *, project: str, name: str, version: int, reason: str, actor: Actor
) -> Row:
    dataset, found = await get_version(session, project, name, version)
    if found.deprecated_at is not None:
        raise Problem(409, f"version {version} of {name!r} is already deprecated")
    await repository.deprecate_version(session, found.id, by=actor.subject, reason=reason)
    event = DatasetVersionDeprecated(
        dataset_id=dataset.id, version_id=found.id, version=version, project=project, reason=reason
    )
    await add_to_outbox(session, runtime.event(event, subject=dataset.id, actor=actor, project=project))
    return (await get_version(session, project, name, version))[1]


# -- uploads -----------------------------------------------------------------------------------------------------
async def upload_version(
    runtime: Runtime,
    *,
    project: str,
    name: str,
    chunks: AsyncIterator[bytes],
    file_type: FileType,
    cleaning: CleaningConfig,
    split: SplitConfig,
    keep_valid: bool,
    limit: int,
    spool_dir: Path | None,
    actor: Actor,
    pool: IngestPool | None = None,
    delimiter: str | None = None,
    parent_version: int | None = None,
    import_id: str | None = None,
) -> tuple[Row, bool]:
    """Validate, clean and store an uploaded file as a new version; returns (version, created). The same cleaned
    content as an existing version returns that version (created False) and stores nothing. A CSV file's columns are
    split at ``delimiter``, by default at the one its header shows. The parent is version ``parent_version``, by
    default the latest; ``import_id`` (an import requested by event) is recorded with a new version, in its event."""
    async with runtime.db.sessions() as session:
        dataset = await get_dataset(session, project, name)
        if parent_version is not None and await repository.find_version(session, dataset.id, parent_version) is None:
            raise Problem(
                422,
                f"invalid input: parent: dataset {name!r} has no version {parent_version}",
                errors=[{"field": "parent", "location": "body", "message": f"no version {parent_version}"}],
            )
    row_format = Format(dataset.format)
    workdir = Path(tempfile.mkdtemp(prefix="llmops-upload-", dir=spool_dir))
    # The cleaned rows are uploaded while they are written; they are stored only by the commit below.
    writer = ObjectWriter(runtime.store, content_type="application/x-ndjson")
    upload = _Upload(
        chunks, workdir, file_type, row_format, cleaning, split, limit=limit, pool=pool, delimiter=delimiter
    )
    try:
        result = await upload.receive_and_clean(writer)
        _refuse_invalid(result, keep_valid)
        if result.rows == 0:
            raise Problem(422, "no rows are left after cleaning; nothing was stored", cleaning=result.cleaning)
        async with runtime.db.sessions() as session:
            existing = await repository.find_version_by_sha(session, dataset.id, result.sha256)
            if parent_version is not None:
                parent = await repository.find_version(session, dataset.id, parent_version)
            else:
                parent = await repository.latest_version(session, dataset.id)
        if existing is not None:
            return existing, False
        stored, hashes = await asyncio.gather(  # the row hashes are stored while the content is
            asyncio.to_thread(writer.commit), runtime.store.put_file(result.row_hashes)
        )
        changes = await _diff_to(runtime, parent, result, workdir) if parent is not None else None
        return await _record_version(
            runtime, dataset, result, stored, hashes.sha256, parent, changes, file_type, actor, import_id
        ), True
    finally:
        await asyncio.to_thread(writer.abort)  # a no-op once committed
        await asyncio.to_thread(upload.close)
        await asyncio.to_thread(shutil.rmtree, workdir, True)
        await asyncio.to_thread(release_free_memory)  # an upload's buffers stay free in malloc's arenas otherwise


class _Upload:
    """A request body spooled to disk and cleaned: JSONL while it arrives (by the workers of ``pool``, or without one
    in a thread), other types once complete."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        workdir: Path,
        file_type: FileType,
        row_format: Format,
        cleaning: CleaningConfig,
        split: SplitConfig,
        *,
        limit: int,
        pool: IngestPool | None,
        delimiter: str | None = None,
    ) -> None:
        self.chunks, self.workdir, self.file_type, self.row_format = chunks, workdir, file_type, row_format
        self.cleaning, self.split, self.limit, self.pool = cleaning, split, limit, pool
        self.delimiter = delimiter
        self.path = workdir / "upload"
        self.parallel: StreamedIngest | None = None

    async def receive_and_clean(self, out: Output) -> IngestResult:
        """Receive the body and write its cleaned rows to ``out``; a body that is not UTF-8 text is refused (422)."""
        try:
            if self.file_type is not FileType.JSONL:
                await self._receive()
                return await asyncio.to_thread(self._ingest, out)
            if self.pool is not None:
                return await self._clean_in_workers(self.pool, out)
            return await self._clean_while_receiving(out)
        except NotUtf8 as exc:
            raise Problem(
                422,
                f"the upload is not UTF-8 text: {exc}; nothing was stored",
                type_="urn:llmops:problem:not-utf8",
                errors=[{"line": exc.line, "field": "<file>", "message": str(exc)}],
            ) from exc

    async def _receive(self, written: Callable[[bytes], None] | None = None) -> None:
        size = await spool(self.chunks, self.path, limit=self.limit, written=written)
        if size == 0:
            raise Problem(422, "the upload is empty", errors=[{"field": "<body>", "message": "no bytes were sent"}])

    def _ingest(self, out: Output) -> IngestResult:
        return ingest(
            self.path,
            self.file_type,
            self.row_format,
            self.workdir,
            cleaning=self.cleaning,
            split=self.split,
            out=out,
            delimiter=self.delimiter,
        )

    async def _clean_while_receiving(self, out: Output) -> IngestResult:
        arriving = ArrivingFile(self.path)

        def clean() -> IngestResult:
            with arriving.reader() as lines:
                return ingest_jsonl(
                    lines, self.row_format, self.workdir, cleaning=self.cleaning, split=self.split, out=out
                )

        cleaned = asyncio.ensure_future(asyncio.to_thread(clean))
        try:
            await self._receive(written=arriving.wrote)
        except BaseException:
            arriving.abort()  # the cleaning thread stops at its next read
            await asyncio.gather(cleaned, return_exceptions=True)
            raise
        arriving.end()
        return await cleaned

    async def _clean_in_workers(self, pool: IngestPool, out: Output) -> IngestResult:
        self.parallel = StreamedIngest(
            self.path,
            self.row_format,
            self.workdir,
            cleaning=self.cleaning,
            split=self.split,
            pool=pool,
            out=out,
        )
        await self._receive(written=self.parallel.feed)
        if not self.parallel.started:
            return await asyncio.to_thread(self._ingest, out)  # smaller than a block
        try:
            return await asyncio.to_thread(self.parallel.finish)
        except WorkerFailed as exc:  # the pool replaces the worker: a retry is served
            log.warning("datasets.ingest_worker_failed", error=str(exc))
            raise Problem(503, f"the upload could not be cleaned ({exc}); nothing was stored: send it again") from exc

    def close(self) -> None:
        """Drop the blocks the workers have not cleaned yet, if any (after the result, or to abandon it)."""
        if self.parallel is not None:
            self.parallel.__exit__()


def _refuse_invalid(result: IngestResult, keep_valid: bool) -> None:
    if result.invalid_rows and not keep_valid:
        first = result.errors[0]
        raise Problem(
            422,
            f"{result.invalid_rows} row(s) do not match the dataset's format (first: line {first.line}, "
            f"{first.field}: {first.message}); nothing was stored. Pass keep_valid=true to store only the valid rows.",
            type_="urn:llmops:problem:invalid-rows",
            invalid_rows=result.invalid_rows,
            errors=[e.as_dict() for e in result.errors],
        )


async def _diff_to(runtime: Runtime, parent: Row, result: IngestResult, workdir: Path) -> dict[str, int]:
    await runtime.store.download(parent.row_hashes_sha256, workdir / "parent_hashes.bin")
    return await asyncio.to_thread(diff, workdir / "parent_hashes.bin", result.row_hashes)


async def _record_version(
    runtime: Runtime,
    dataset: Row,
    result: IngestResult,
    stored,
    hashes_sha256: str,
    parent: Row | None,
    changes: dict[str, int] | None,
    file_type: FileType,
    actor: Actor,
    import_id: str | None,
) -> Row:
    try:
        async with runtime.db.transaction() as session:
            await repository.lock_dataset(session, dataset.id)
            existing = await repository.find_version_by_sha(session, dataset.id, result.sha256)
            if existing is not None:  # the same content was stored concurrently
                return existing
            number = await repository.next_version_number(session, dataset.id)
            version_id = str(uuid.uuid4())
            values: dict[str, Any] = {
                "id": version_id,
                "dataset_id": dataset.id,
                "version": number,
                "sha256": result.sha256,
                "uri": stored.uri,
                "size_bytes": result.size,
                "row_count": result.rows,
                "row_hashes_sha256": hashes_sha256,
                "stats": result.stats,
                "splits": result.splits,
                "cleaning": result.cleaning,
                "source_type": file_type.value,
                "invalid_rows_dropped": result.invalid_rows,
                "errors": [e.as_dict() for e in result.errors],
                "parent_version_id": parent.id if parent is not None else None,
                "diff": changes,
                "created_by": actor.subject,
            }
            await repository.insert_version(session, values)
            created = await repository.find_version(session, dataset.id, number)
            if import_id is not None:
                await repository.insert_import(
                    session,
                    {
                        "import_id": import_id,
                        "project": dataset.project,
                        "dataset": dataset.name,
                        "version_id": version_id,
                    },
                )
            await add_to_outbox(
                session,
                runtime.event(
                    version_event(dataset, created, import_id), subject=dataset.id, actor=actor, project=dataset.project
                ),
            )
    except IntegrityError as exc:
        raise Problem(409, "a concurrent upload stored this dataset's next version first; retry") from exc
    log.info("dataset.version.stored", dataset=dataset.name, version=number, sha256=result.sha256, rows=result.rows)
    return created


def version_event(dataset: Row, version: Row, import_id: str | None = None) -> DatasetVersionCreated:
    """The ``dataset.version.created`` event of a stored version (answering import ``import_id``, if any)."""
    return DatasetVersionCreated(
        dataset_id=dataset.id,
        version_id=version.id,
        version=version.version,
        project=dataset.project,
        name=dataset.name,
        format=dataset.format,
        uri=version.uri,
        sha256=version.sha256,
        size_bytes=version.size_bytes,
        row_count=version.row_count,
        stats=version.stats,
        splits=version.splits,
        cleaning=version.cleaning,
        parent_version_id=version.parent_version_id,
        diff=version.diff,
        invalid_rows_dropped=version.invalid_rows_dropped,
        import_id=import_id,
    )
