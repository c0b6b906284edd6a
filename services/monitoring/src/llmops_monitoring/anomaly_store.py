"""Unusual outputs in Postgres: flagged records counted per project, deployment, kind and window in the ingest
transaction; closed windows assessed (``anomaly_windows.assess``) by a periodic pass that publishes one
``monitoring.anomaly.detected`` per (deployment, kind) past its threshold, unless the same pair was announced within
the throttle period. A window is closed once its end plus a grace period (for late records) has passed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.runtime import Actor, Runtime
from llmops_monitoring.anomalies import AnomalySettings
from llmops_monitoring.anomaly_windows import Group, Throttle, WindowCounter, assess
from llmops_monitoring.models import anomaly_counts, anomaly_notices, deployments
from llmops_monitoring.records import NO_DEPLOYMENT
from llmops_schemas.events.monitoring import Window

#: The kind under which a window's completed records are counted.
TOTAL = ""
ACTOR = Actor("monitoring")


def window_of(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


async def count(session: AsyncSession, records: Iterable[Mapping[str, Any]], *, window_seconds: int) -> None:
    """Count completed records and their flags into their windows."""
    await _add_counts(session, _record_rows(records, window_seconds))


async def count_table(session: AsyncSession, table: pa.Table, flags: list[list[str]], *, window_seconds: int) -> None:
    """:func:`count` of the records ``table.to_pylist()`` with ``flags[i]`` as row i's flags, grouped by column
    operations instead of a dict per record."""
    await _add_counts(session, _table_rows(table, flags, window_seconds))


def _record_rows(records: Iterable[Mapping[str, Any]], window_seconds: int) -> list[dict[str, Any]]:
    counters: dict[datetime, WindowCounter] = defaultdict(WindowCounter)
    for record in records:
        counters[window_of(record["time"], window_seconds)].add(record)
    rows = []
    for start, counter in counters.items():
        for group, total in counter.records.items():
            rows.append(_row(group, start, TOTAL, total, []))
        for (group, kind), flagged in counter.counts.items():
            rows.append(_row(group, start, kind, flagged, counter.examples.get((group, kind), [])))
    return rows


def _table_rows(table: pa.Table, flags: list[list[str]], window_seconds: int) -> list[dict[str, Any]]:
    """The rows of :func:`_record_rows`: completed rows per (project, deployment, window), and per kind flagged, with
    the kind's first request ids (non-empty ones, :class:`WindowCounter`'s ``max_examples``) in table order."""
    if len(flags) != table.num_rows:
        raise ValueError(f"{len(flags)} flag lists for {table.num_rows} rows")
    done = np.flatnonzero(np.asarray(pc.fill_null(pc.equal(table.column("outcome"), "completed"), False)))
    if len(done) == 0:
        return []
    table = table.select(["project", "deployment_id", "time", "request_id"]).take(done)
    groups, labels = _groups(table, window_seconds)
    rows = [_row(*labels[group], TOTAL, n, []) for group, n in enumerate(np.bincount(groups).tolist())]
    picked = [flags[i] for i in done.tolist()]
    entries = np.repeat(np.arange(len(picked)), [len(kinds) for kinds in picked])  # each flag's row
    if len(entries) == 0:
        return rows
    kinds = pc.dictionary_encode(pa.array([kind for kinds in picked for kind in kinds], type=pa.string()))
    names = kinds.dictionary.to_pylist()
    pairs, of_pair = np.unique(groups[entries] * len(names) + np.asarray(kinds.indices), return_inverse=True)
    of_pair = of_pair.reshape(-1)
    examples = _first_examples(table.column("request_id"), entries, of_pair, len(pairs))
    for pair, (key, flagged) in enumerate(zip(pairs.tolist(), np.bincount(of_pair).tolist(), strict=True)):
        group, kind = divmod(key, len(names))
        rows.append(_row(*labels[group], names[kind], flagged, examples[pair]))
    return rows


def _groups(table: pa.Table, window_seconds: int) -> tuple[np.ndarray, list[tuple[Group, datetime]]]:
    """Each row's (group, window start) as an index into the table's distinct ones."""
    deployment = table.column("deployment_id")
    named = pc.greater(pc.fill_null(pc.utf8_length(deployment), 0), 0)  # WindowCounter's `deployment_id or ...`
    codes, names = [_window_starts(table.column("time"), window_seconds)], []
    for column in (table.column("project"), pc.if_else(named, deployment, NO_DEPLOYMENT)):
        encoded = pc.dictionary_encode(column.combine_chunks())
        codes.append(np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64) + 1)
        names.append([None, *encoded.dictionary.to_pylist()])
    keys, groups = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    labels = [(Group(names[0][p], names[1][d]), datetime.fromtimestamp(start, UTC)) for start, p, d in keys.tolist()]
    return groups.reshape(-1), labels


def _first_examples(request_ids: pa.ChunkedArray, entries: np.ndarray, of_pair: np.ndarray, pairs: int) -> list:
    """Per pair, the request ids of its first named flags (by ``entries``' order, the table's)."""
    order = np.flatnonzero(np.asarray(pc.fill_null(pc.utf8_length(request_ids), 0))[entries] > 0)
    order = order[np.argsort(of_pair[order], kind="stable")]
    rank = np.arange(len(order)) - np.searchsorted(of_pair[order], of_pair[order])
    order = order[rank < WindowCounter.max_examples]
    examples: list[list[str]] = [[] for _ in range(pairs)]
    ids = request_ids.take(pa.array(entries[order])).to_pylist()
    for pair, request_id in zip(of_pair[order].tolist(), ids, strict=True):
        examples[pair].append(request_id)
    return examples


def _window_starts(times: pa.ChunkedArray, seconds: int) -> np.ndarray:
    """window_of's epoch seconds of each time: int(moment.timestamp()) is the float quotient truncated, which numpy
    computes alike while the microseconds are exact as a float (within 2**53, some 285 years of 1970)."""
    if times.null_count:
        raise ValueError("a record without a time")
    micros = np.asarray(pc.cast(times, pa.timestamp("us", tz="UTC")).cast(pa.int64()))
    epoch = np.trunc(micros / 1e6).astype(np.int64)
    for i in np.flatnonzero(np.abs(micros) >= 2**53).tolist():
        epoch[i] = int(times[i].as_py().timestamp())
    return epoch - epoch % seconds


async def _add_counts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add the rows' counts (and examples, up to ten) to those of their windows."""
    if not rows:
        return
    rows.sort(key=lambda r: (r["project"], r["deployment_id"], r["window_start"], r["kind"]))
    statement = insert(anomaly_counts).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["project", "deployment_id", "window_start", "kind"],
            set_={
                "count": anomaly_counts.c.count + statement.excluded.count,
                "examples": text("jsonb_path_query_array(anomaly_counts.examples || excluded.examples, '$[0 to 9]')"),
            },
        )
    )


def _row(group: Group, start: datetime, kind: str, n: int, examples: list[str]) -> dict[str, Any]:
    return {
        "project": group.project,
        "deployment_id": group.deployment_id,
        "window_start": start,
        "kind": kind,
        "count": n,
        "examples": examples,
    }


async def assess_closed_windows(
    session: AsyncSession,
    runtime: Runtime,
    settings: AnomalySettings,
    *,
    window_seconds: int,
    grace_seconds: float,
    now: datetime | None = None,
) -> int:
    """Assess every closed, unassessed window: publish its notices (throttled), mark it assessed; returns how many
    notices were published. Runs in the caller's transaction (rows locked: two passes never announce twice)."""
    now = now or datetime.now(UTC)
    closed_before = now - timedelta(seconds=window_seconds + grace_seconds)
    totals = (
        await session.execute(
            select(anomaly_counts.c.project, anomaly_counts.c.deployment_id, anomaly_counts.c.window_start)
            .where(~anomaly_counts.c.notified, anomaly_counts.c.kind == TOTAL)
            .where(anomaly_counts.c.window_start <= closed_before)
            .order_by(anomaly_counts.c.window_start)
            .limit(1000)
            .with_for_update(skip_locked=True)
        )
    ).all()
    published = 0
    throttle = Throttle(settings.throttle_seconds)
    by_window: dict[datetime, list[Any]] = defaultdict(list)
    for row in totals:
        by_window[row.window_start].append(row)
    for start, groups in sorted(by_window.items()):
        keys = [(g.project, g.deployment_id) for g in groups]
        rows = (
            await session.execute(
                select(anomaly_counts).where(
                    anomaly_counts.c.window_start == start,
                    tuple_(anomaly_counts.c.project, anomaly_counts.c.deployment_id).in_(keys),
                )
            )
        ).all()
        counts, records, examples = {}, {}, {}
        for row in rows:
            group = Group(row.project, row.deployment_id)
            if row.kind == TOTAL:
                records[group] = row.count
            else:
                counts[group, row.kind] = row.count
                examples[group, row.kind] = row.examples
        end = start + timedelta(seconds=window_seconds)
        notices = assess(counts, records, settings, examples=examples, labels=await _labels(session, records))
        last_sent = await _last_sent(session, [n.key for n in notices])
        for notice in throttle.select(notices, last_sent, end):
            payload = notice.event(Window(start=start, end=end))
            event = runtime.event(
                payload, subject=notice.group.deployment_id, actor=ACTOR, project=notice.group.project
            )
            await add_to_outbox(session, event)
            statement = insert(anomaly_notices).values(
                project=notice.group.project,
                deployment_id=notice.group.deployment_id,
                kind=notice.kind,
                last_window_start=start,
                last_sent_at=end,
                event_id=event.id,
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["project", "deployment_id", "kind"],
                    set_={"last_window_start": start, "last_sent_at": end, "event_id": event.id},
                )
            )
            published += 1
        await session.execute(
            update(anomaly_counts)
            .where(
                anomaly_counts.c.window_start == start,
                anomaly_counts.c.kind == TOTAL,
                tuple_(anomaly_counts.c.project, anomaly_counts.c.deployment_id).in_(keys),
            )
            .values(notified=True)
        )
    return published


async def _labels(session: AsyncSession, groups) -> dict[Group, tuple[str | None, str | None]]:
    """The model version each group's deployment serves (from the deployments projection; the route is not known
    there: a deployment may serve several)."""
    ids = [group.deployment_id for group in groups]
    rows = (
        await session.execute(
            select(deployments.c.deployment_id, deployments.c.model_version_id).where(
                deployments.c.deployment_id.in_(ids)
            )
        )
    ).all()
    served = {row.deployment_id: row.model_version_id for row in rows}
    return {group: (None, served.get(group.deployment_id)) for group in groups}


async def _last_sent(session: AsyncSession, keys: list[tuple[Group, str]]) -> dict[tuple[Group, str], datetime]:
    if not keys:
        return {}
    rows = (
        await session.execute(
            select(anomaly_notices).where(
                tuple_(anomaly_notices.c.project, anomaly_notices.c.deployment_id, anomaly_notices.c.kind).in_(
                    [(g.project, g.deployment_id, kind) for g, kind in keys]
                )
            )
        )
    ).all()
    return {(Group(r.project, r.deployment_id), r.kind): r.last_sent_at for r in rows}


async def windows(
    session: AsyncSession, project: str, start: datetime, end: datetime, deployment_id: str | None = None
) -> list[dict[str, Any]]:
    """Flag counts per window and deployment of a project (what the anomalies API lists)."""
    query = select(anomaly_counts).where(
        anomaly_counts.c.project == project,
        anomaly_counts.c.window_start >= start,
        anomaly_counts.c.window_start < end,
    )
    if deployment_id is not None:
        query = query.where(anomaly_counts.c.deployment_id == deployment_id)
    out: dict[tuple[str, datetime], dict[str, Any]] = {}
    for row in (await session.execute(query.order_by(anomaly_counts.c.window_start))).all():
        entry = out.setdefault(
            (row.deployment_id, row.window_start),
            {"deployment_id": row.deployment_id, "window_start": row.window_start, "records": 0, "flags": {}},
        )
        if row.kind == TOTAL:
            entry["records"], entry["assessed"] = row.count, row.notified
        else:
            entry["flags"][row.kind] = {"count": row.count, "examples": row.examples}
    return list(out.values())
