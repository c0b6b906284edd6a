"""The record store: every inference record as Parquet in the object store, hive-partitioned by date and deployment
(``<prefix>/date=2026-12-01/deployment=<id>/part-<sha256>.parquet``): the service reads it with pyarrow, and DuckDB,
Spark, Trino or Athena read it as a table when a team outgrows one machine.

Exactly once, without a distributed transaction: the consumer writes a batch's files under ``<prefix>/_staging/``
(readers of a hive layout skip paths that start with ``_``), registers them in ``record_files`` in the same
transaction as the batch's inbox rows and metrics, and only then copies each to its final key (``publish``). A
process killed before its commit leaves unregistered staging objects (swept later) and its events unapplied (they
come again); one killed after the commit leaves registered, unpublished files, which the next maintenance pass
publishes (the copy is idempotent). A final key is its content's hash: the same file published twice is one file.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.db import Database
from llmops.logging import get_logger
from llmops.storage import ObjectNotFound, ObjectStore
from llmops_monitoring.models import record_files
from llmops_monitoring.records import NO_DEPLOYMENT, SCHEMA

log = get_logger(__name__)

STAGING = "_staging"


class TooManyRecords(ValueError):
    """A read would hold more records than its bound: a shorter range, or a deployment, narrows it."""


@dataclass(frozen=True)
class RecordFile:
    id: str
    key: str
    staging_key: str
    date: str
    deployment: str
    rows: int
    bytes: int
    sha256: str
    min_time: datetime
    max_time: datetime


def partition_value(value: str | None) -> str:
    """A deployment id as a path segment: escaped as hive escapes partition values (an external publisher's id may
    hold any character); a leading dot too, so no segment reads as ``.`` or ``..``."""
    escaped = quote(value or NO_DEPLOYMENT, safe="-_.")
    return "%2E" + escaped[1:] if escaped.startswith(".") else escaped


#: Columns of few distinct values: dictionary-encoded (the others, texts and hashes, are not: it costs time and,
#: compressed, no space).
_DICTIONARY = [
    "outcome", "source", "project", "route", "api", "deployment_id", "model_version_id", "prompt_version_id", "user",
    "key_id", "usage_source", "finish_reason", "text_mode", "error", "flags",
]  # fmt: skip


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=_DICTIONARY)
    return sink.getvalue()


async def stage(store: ObjectStore, prefix: str, records: Iterable[dict[str, Any]]) -> list[RecordFile]:
    """Write ``records`` (dicts) as one staged Parquet file per (date, deployment); returns what to register."""
    return await stage_table(store, prefix, pa.Table.from_pylist(list(records), schema=SCHEMA))


async def stage_table(store: ObjectStore, prefix: str, table: pa.Table) -> list[RecordFile]:
    """Write the records of ``table`` (the columns of ``SCHEMA``) as one staged Parquet file per (date,
    deployment), each in (time, event id) order; returns what to register."""
    if not table.num_rows:
        return []
    table = table.select(SCHEMA.names).sort_by([("time", "ascending"), ("event_id", "ascending")])
    days = pc.strftime(table["time"], format="%Y-%m-%d")
    deployments = pc.fill_null(table["deployment_id"], NO_DEPLOYMENT)
    keys = pc.binary_join_element_wise(days, deployments, "\n")
    files = []
    for key in sorted(pc.unique(keys).to_pylist()):
        day, deployment_id = key.split("\n", 1)
        rows = table.filter(pc.equal(keys, key))
        data = parquet_bytes(rows)
        sha = hashlib.sha256(data).hexdigest()
        staging_key = f"{prefix}/{STAGING}/{sha}.parquet"
        await store.put_named(staging_key, data, content_type="application/vnd.apache.parquet")
        deployment = partition_value(deployment_id)
        files.append(
            RecordFile(
                id=str(uuid.uuid4()),
                key=f"{prefix}/date={day}/deployment={deployment}/part-{sha}.parquet",
                staging_key=staging_key,
                date=day,
                deployment=deployment,
                rows=rows.num_rows,
                bytes=len(data),
                sha256=sha,
                min_time=rows["time"][0].as_py(),
                max_time=rows["time"][-1].as_py(),
            )
        )
    return files


async def register(session: AsyncSession, files: Sequence[RecordFile]) -> None:
    if files:
        await session.execute(
            insert(record_files).values([asdict(f) for f in files]).on_conflict_do_nothing(index_elements=["key"])
        )


async def publish_pending(db: Database, store: ObjectStore, *, limit: int = 500, concurrency: int = 8) -> int:
    """Copy registered, unpublished files to their final keys (several at once), mark them in one statement, then
    remove their staging objects; returns how many were published."""
    async with db.sessions() as session:
        pending = (
            await session.execute(
                select(record_files.c.id, record_files.c.key, record_files.c.staging_key)
                .where(~record_files.c.published)
                .order_by(record_files.c.created_at)
                .limit(limit)
            )
        ).all()
    if not pending:
        return 0
    gate = asyncio.Semaphore(concurrency)

    async def copy(key: str, staging_key: str) -> None:
        async with gate:
            try:
                await store.copy_named(staging_key, key)
            except Exception as exc:
                if not _missing(exc):
                    raise
                # The staging object is gone: an earlier pass copied it, then died before marking the row.
                log.info("monitoring.records.staging_gone", key=key)

    await asyncio.gather(*(copy(key, staging_key) for _, key, staging_key in pending))
    async with db.transaction() as session:
        await session.execute(
            update(record_files).where(record_files.c.id.in_([row.id for row in pending])).values(published=True)
        )

    async def remove(staging_key: str) -> None:
        async with gate:
            await store.remove_named(staging_key)

    await asyncio.gather(*(remove(staging_key) for _, _, staging_key in pending))
    return len(pending)


async def sweep_staging(db: Database, store: ObjectStore, prefix: str, *, older_than: timedelta) -> int:
    """Remove staged objects no transaction registered (their batch rolled back), once older than ``older_than``."""
    staged = await store.list_named(f"{prefix}/{STAGING}/")
    if not staged:
        return 0
    cutoff = datetime.now(UTC) - older_than
    async with db.sessions() as session:
        registered = set(
            (
                await session.execute(
                    select(record_files.c.staging_key).where(
                        record_files.c.staging_key.in_([key for key, _, _ in staged])
                    )
                )
            ).scalars()
        )
    removed = 0
    for key, _, modified in staged:
        if key not in registered and isinstance(modified, datetime) and modified < cutoff:
            await store.remove_named(key)
            removed += 1
    return removed


async def apply_retention(db: Database, store: ObjectStore, *, days: int, today: date | None = None) -> int:
    """Remove the date partitions older than ``days`` (their files, then their manifest rows); returns files removed."""
    cutoff = ((today or datetime.now(UTC).date()) - timedelta(days=days)).isoformat()
    async with db.sessions() as session:
        old = (
            await session.execute(
                select(record_files.c.id, record_files.c.key, record_files.c.staging_key).where(
                    record_files.c.date < cutoff
                )
            )
        ).all()
    for _, key, staging_key in old:
        await store.remove_named(key)
        await store.remove_named(staging_key)
    if old:
        async with db.transaction() as session:
            await session.execute(delete(record_files).where(record_files.c.id.in_([row.id for row in old])))
        log.info("monitoring.records.retention", files=len(old), before=cutoff)
    return len(old)


async def files_between(
    session: AsyncSession, start: datetime, end: datetime, deployment_id: str | None = None
) -> list[Any]:
    """The registered files that may hold records of ``[start, end)`` (of one deployment)."""
    query = select(record_files).where(record_files.c.min_time < end, record_files.c.max_time >= start)
    if deployment_id is not None:
        query = query.where(record_files.c.deployment == partition_value(deployment_id))
    return list((await session.execute(query.order_by(record_files.c.min_time))).all())


async def read_table(
    db: Database,
    store: ObjectStore,
    start: datetime,
    end: datetime,
    *,
    project: str | None = None,
    deployment_id: str | None = None,
    columns: Sequence[str] | None = None,
    max_rows: int | None = None,
) -> pa.Table:
    """The records of ``[start, end)`` (of one project, of one deployment; only ``columns`` when given) in time
    order, as one Arrow table, read from the manifest's files (their staging copy when not yet published, several
    at once), decoded, filtered and ordered by Arrow in a thread. :class:`TooManyRecords` before anything is read
    when the files hold more than ``max_rows`` records (the manifest counts them)."""
    if columns is not None and not set(columns) <= set(SCHEMA.names):
        raise ValueError(f"no such record columns: {sorted(set(columns) - set(SCHEMA.names))}")
    async with db.sessions() as session:
        files = await files_between(session, start, end, deployment_id)
    held = sum(f.rows for f in files)
    if max_rows is not None and held > max_rows:
        raise TooManyRecords(f"the range's files hold {held} records, more than {max_rows} read at once")
    fetching = asyncio.Semaphore(8)

    async def fetch(f: RecordFile) -> bytes:
        async with fetching:
            try:
                return await store.get_named(f.key if f.published else f.staging_key)
            except ObjectNotFound:
                return await store.get_named(f.key)  # published meanwhile

    parts = await asyncio.gather(*(fetch(f) for f in files))
    return await asyncio.to_thread(_records_of, parts, start, end, project, deployment_id, columns)


def _records_of(
    parts: Sequence[bytes],
    start: datetime,
    end: datetime,
    project: str | None,
    deployment_id: str | None,
    columns: Sequence[str] | None,
) -> pa.Table:
    wanted = None if columns is None else list(dict.fromkeys([*_FILTERED, *columns]))
    tables = [pq.read_table(io.BytesIO(data), columns=wanted) for data in parts]
    records = pa.concat_tables(tables) if tables else SCHEMA.empty_table().select(wanted or SCHEMA.names)
    where = (pc.field("time") >= pa.scalar(start, SCHEMA.field("time").type)) & (
        pc.field("time") < pa.scalar(end, SCHEMA.field("time").type)
    )
    if project is not None:
        where &= pc.field("project") == project
    if deployment_id is not None:
        where &= pc.field("deployment_id") == deployment_id
    found = records.filter(where).sort_by([("time", "ascending"), ("event_id", "ascending")])
    return found if columns is None else found.select(list(columns))


_FILTERED = ("time", "event_id", "project", "deployment_id")  # what read_table filters and orders by


def _missing(error: Exception) -> bool:
    return getattr(error, "code", None) in {"NoSuchKey", "NoSuchObject", "NotFound"}
