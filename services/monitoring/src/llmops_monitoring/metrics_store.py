"""Metric buckets in Postgres: each batch of records is counted into its minute and its hour buckets, of all users
(with percentile sketches) and per user (counts only; ``metrics.aggregate``) (all written
directly: an hour bucket is exactly the merge of its minutes, so no roll-up job can fall behind), merged into the
stored rows under row locks taken in key order (several consumers may share a bucket; none waits on another in a
cycle). Queries read the buckets of a range, group them, and summarise each group (``metrics.summarise``)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.errors import Problem
from llmops_monitoring.metric_columns import aggregate_table
from llmops_monitoring.metrics import (
    RESOLUTIONS,
    Bucket,
    BucketKey,
    Resolution,
    aggregate,
    rollup,
    summarise,
)
from llmops_monitoring.models import metric_buckets

DIMENSIONS: tuple[str, ...] = ("project", "route", "deployment_id", "model_version_id", "user")
_KEY_COLUMNS = ("resolution", "start", *DIMENSIONS)
_EMPTY_JSON = json.dumps(Bucket().to_row())


def _key_of(row: Any) -> BucketKey:
    return BucketKey(**{name: getattr(row, name) for name in _KEY_COLUMNS})


def _sort_key(key: BucketKey) -> tuple:
    return (key.resolution, key.start, key.project, key.route, key.deployment_id, key.model_version_id, key.user)


async def add_records(session: AsyncSession, records: Iterable[Mapping[str, Any]]) -> None:
    """Count ``records`` into their minute and hour buckets."""
    await merge_buckets(session, buckets_of(records))


def buckets_of(records: Iterable[Mapping[str, Any]]) -> dict[BucketKey, Bucket]:
    """The minute and hour buckets of ``records``, of all users and per user."""
    records = list(records)
    buckets: dict[BucketKey, Bucket] = {}
    for by_user in (False, True):
        minutes = aggregate(records, "minute", by_user=by_user)
        buckets.update(minutes)
        buckets.update(rollup(minutes, "hour"))  # the merge of its minutes, as counting the records again would be
    return buckets


def buckets_of_table(table: pa.Table) -> dict[BucketKey, Bucket]:
    """The buckets of :func:`buckets_of` for records given as one Arrow table (the columns of ``records.SCHEMA``):
    the same, to the last count, bin and float, counted column by column."""
    return aggregate_table(table)


# A batch's keys travel as one array per column (one statement, whatever the number of keys: compiled once, cached).
def _arrays(*extra: str) -> str:
    """The keys' arrays (and ``extra`` text arrays) as the rows of ``k``."""
    names = [*_KEY_COLUMNS, *extra]
    arrays = ", ".join(f"CAST(:{n} AS {'timestamptz' if n == 'start' else 'text'}[])" for n in names)
    columns = ", ".join('"user"' if n == "user" else n for n in names)  # a reserved word
    return f"unnest({arrays}) AS k({columns})"


_KEY_ARRAYS = _arrays()
# (S608: the statements are built from constants only)
_MAKE = text(
    'INSERT INTO metric_buckets (resolution, start, project, route, deployment_id, model_version_id, "user", data)'  # noqa: S608
    f" SELECT k.*, CAST(:empty AS jsonb) FROM {_KEY_ARRAYS} ON CONFLICT DO NOTHING"
)
_LOCK = text(
    'SELECT b.resolution, b.start, b.project, b.route, b.deployment_id, b.model_version_id, b."user", b.data'  # noqa: S608
    f" FROM metric_buckets b JOIN {_KEY_ARRAYS}"
    ' USING (resolution, start, project, route, deployment_id, model_version_id, "user")'
    " ORDER BY 1, 2, 3, 4, 5, 6, 7 FOR UPDATE OF b"
).columns(data=JSONB)
# the merged buckets written back in one statement: the keys' arrays and one of their data
_WRITE = text(
    f"UPDATE metric_buckets b SET data = CAST(k.data AS jsonb), updated_at = now() FROM {_arrays('data')}"  # noqa: S608
    ' WHERE (b.resolution, b.start, b.project, b.route, b.deployment_id, b.model_version_id, b."user")'
    ' = (k.resolution, k.start, k.project, k.route, k.deployment_id, k.model_version_id, k."user")'
)


async def merge_buckets(session: AsyncSession, buckets: Mapping[BucketKey, Bucket]) -> None:
    """Add ``buckets`` to the stored ones (made when missing), under row locks taken in key order."""
    if not buckets:
        return
    keys = sorted(buckets, key=_sort_key)
    for chunk in _chunks(keys, 5_000):
        arrays = {column: [getattr(key, column) for key in chunk] for column in _KEY_COLUMNS}
        await session.execute(_MAKE, {**arrays, "empty": _EMPTY_JSON})
        stored = (await session.execute(_LOCK, arrays)).all()
        changes: dict[str, list[Any]] = {column: [] for column in (*_KEY_COLUMNS, "data")}
        for row in stored:
            bucket = Bucket.from_row(row.data)
            bucket.merge(buckets[_key_of(row)])
            for column in _KEY_COLUMNS:
                changes[column].append(getattr(row, column))
            changes["data"].append(json.dumps(bucket.to_row()))
        await session.execute(_WRITE, changes)


def resolution_for(start: datetime, end: datetime, *, minute_days: int, requested: str = "auto") -> Resolution:
    """``minute`` for ranges of up to six hours inside the minute buckets' life, else ``hour`` (or as asked)."""
    if requested in RESOLUTIONS:
        if requested == "minute" and start < datetime.now(UTC) - timedelta(days=minute_days):
            raise Problem(
                422,
                f"minute buckets are kept {minute_days} days: ask for resolution=hour",
                type_="urn:llmops:problem:validation",
                errors=[{"field": "resolution", "location": "query", "message": "minute buckets expired"}],
            )
        return requested  # type: ignore[return-value]
    recent = start >= datetime.now(UTC) - timedelta(days=minute_days)
    return "minute" if recent and end - start <= timedelta(hours=6) else "hour"


async def read_buckets(
    session: AsyncSession,
    *,
    project: str,
    start: datetime,
    end: datetime,
    resolution: Resolution,
    filters: Mapping[str, str] | None = None,
    limit: int,
    by_user: bool | None = None,
) -> list[tuple[BucketKey, Bucket]]:
    """The buckets of ``project`` whose start is in ``[start, end)`` (at the resolution's boundaries), filtered: the
    per-user buckets (counts without percentiles) when ``by_user`` (by default: when ``filters`` name a user), else
    the buckets of all users. The two kinds count the same records and are never read together."""
    if by_user is None:
        by_user = bool((filters or {}).get("user"))
    columns = [metric_buckets.c[name] for name in _KEY_COLUMNS]
    query = select(*columns, metric_buckets.c.data).where(
        metric_buckets.c.resolution == resolution,
        metric_buckets.c.project == project,
        metric_buckets.c.start
        >= start.replace(second=0, microsecond=0, **({"minute": 0} if resolution == "hour" else {})),
        metric_buckets.c.start < end,
    )
    for name, value in (filters or {}).items():
        query = query.where(metric_buckets.c[name] == value)
    query = query.where(metric_buckets.c.user != "" if by_user else metric_buckets.c.user == "")
    rows = (await session.execute(query.order_by(metric_buckets.c.start).limit(limit + 1))).all()
    if len(rows) > limit:
        raise Problem(
            422,
            f"the range holds more than {limit} buckets: narrow it, filter it, or ask for resolution=hour",
            type_="urn:llmops:problem:validation",
            errors=[{"field": "start", "location": "query", "message": "too many buckets in range"}],
        )
    return [(_key_of(row), Bucket.from_row(row.data)) for row in rows]


def group(
    buckets: Iterable[tuple[BucketKey, Bucket]], by: Sequence[str], *, step: bool = False
) -> list[dict[str, Any]]:
    """One summary per distinct value of the ``by`` dimensions (and bucket start, with ``step``), in order."""
    groups: dict[tuple, list[Bucket]] = defaultdict(list)
    for key, bucket in buckets:
        groups[(key.start if step else None, *(getattr(key, name) for name in by))].append(bucket)
    out = []
    for values, members in sorted(groups.items(), key=lambda item: tuple(str(v) for v in item[0])):
        entry: dict[str, Any] = {name: value or None for name, value in zip(by, values[1:], strict=True)}
        if step:
            entry["start"] = values[0]
        entry.update(summarise(members))
        out.append(entry)
    return out


async def drop_minutes_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(metric_buckets).where(metric_buckets.c.resolution == "minute", metric_buckets.c.start < before)
    )
    return result.rowcount or 0


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def prometheus_groups(session: AsyncSession, *, limit: int) -> dict[tuple[str, str, str, str], Bucket]:
    """Every hour bucket kept, merged per (project, route, deployment, model version): cumulative over the
    retention, as Prometheus counters must be (a partition leaving the retention reads as a counter reset)."""
    columns = [metric_buckets.c[name] for name in ("project", "route", "deployment_id", "model_version_id")]
    rows = (
        await session.execute(
            select(*columns, metric_buckets.c.data)
            .where(metric_buckets.c.resolution == "hour", metric_buckets.c.user == "")
            .order_by(metric_buckets.c.start.desc())
            .limit(limit)
        )
    ).all()
    groups: dict[tuple[str, str, str, str], Bucket] = {}
    for row in rows:
        key = (row.project, row.route, row.deployment_id, row.model_version_id)
        bucket = Bucket.from_row(row.data)
        if key in groups:
            groups[key].merge(bucket)
        else:
            groups[key] = bucket
    return groups
