"""Drift reports of deployments, on a schedule and on request: the current window's records against a reference
(the deployment's pinned baseline window, else the window of the same length just before, both read from the
record store; or the examples of the evaluation run that gated the deployment's model version:
``evaluation_reference``); Evidently's report (``drift.run_drift``, in a thread) stored as its JSON and its snapshot
(the HTML is rendered from it when opened) in the object store and as a ``drift_reports`` row.
``monitoring.drift.detected`` is published when the scheduled reports of a deployment have drifted ``consecutive``
windows in a row (once per run of drifted windows); a report on request publishes when it drifts by itself (someone
asked)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.db import Database
from llmops.logging import get_logger
from llmops.runtime import Actor, Runtime
from llmops.storage import ObjectStore
from llmops_monitoring import evaluation_reference, record_store
from llmops_monitoring.drift import READ_COLUMNS, Consecutive, DriftSettings, TooFewRows, run_drift
from llmops_monitoring.evaluation_reference import NoGatedEvaluation
from llmops_monitoring.models import deployments, drift_baselines, drift_reports
from llmops_monitoring.record_store import partition_value
from llmops_schemas.events.monitoring import MonitoringDriftDetected, Window

log = get_logger(__name__)


@dataclass(frozen=True)
class DriftRequest:
    project: str
    deployment_id: str
    current_start: datetime
    current_end: datetime
    trigger: str  # schedule | request
    requested_by: str
    correlation_id: str | None = None
    reference_start: datetime | None = None
    reference_end: datetime | None = None
    #: "window" (the request's, the pinned baseline, or the window before) or "evaluation_dataset" (the examples of
    #: the evaluation run that gated the deployment's model version)
    reference: str = "window"


async def reference_window(session: AsyncSession, request: DriftRequest) -> tuple[datetime, datetime]:
    """The request's own reference, else the deployment's pinned baseline, else the window just before."""
    if request.reference_start is not None and request.reference_end is not None:
        return request.reference_start, request.reference_end
    pinned = (
        await session.execute(select(drift_baselines).where(drift_baselines.c.deployment_id == request.deployment_id))
    ).one_or_none()
    if pinned is not None:
        return pinned.start, pinned.end
    length = request.current_end - request.current_start
    return request.current_start - length, request.current_start


async def run_report(
    runtime: Runtime,
    store: ObjectStore,
    settings: Any,
    drift_settings: DriftSettings,
    request: DriftRequest,
    *,
    report_id: str | None = None,
) -> dict[str, Any]:
    """Run, store and record one report (as ``report_id``: a claimed row, which it completes); returns its row. A
    window with too few records is recorded as skipped."""
    db: Database = runtime.db
    evaluation = request.reference == "evaluation_dataset"
    async with db.sessions() as session:
        reference_start, reference_end = (None, None) if evaluation else await reference_window(session, request)
        model_version_id = (
            await session.execute(
                select(deployments.c.model_version_id).where(deployments.c.deployment_id == request.deployment_id)
            )
        ).scalar_one_or_none()
    read = dict(
        project=request.project,
        deployment_id=request.deployment_id,
        columns=READ_COLUMNS,
        max_rows=settings.max_read_records,
    )
    report_id = report_id or str(uuid.uuid4())
    row: dict[str, Any] = {
        "id": report_id,
        "project": request.project,
        "deployment_id": request.deployment_id,
        "model_version_id": model_version_id,
        "trigger": request.trigger,
        "reference": request.reference,
        "reference_start": reference_start,
        "reference_end": reference_end,
        "current_start": request.current_start,
        "current_end": request.current_end,
        "reference_rows": None,
        "current_rows": None,
        "requested_by": request.requested_by,
    }
    try:
        if evaluation:  # the examples of the run that gated the version
            async with db.sessions() as session:
                run = await evaluation_reference.gating_run(session, request.project, model_version_id)
            row["reference_run_id"] = run.run_id
            reading = evaluation_reference.reference_frame(
                store, run, max_rows=settings.max_read_records, max_bytes=settings.max_reference_bytes
            )
        else:
            reading = record_store.read_table(db, store, reference_start, reference_end, **read)
        # both at once, the record store's as Arrow tables of the columns drift reads (no Python object per record)
        current, reference = await asyncio.gather(
            record_store.read_table(db, store, request.current_start, request.current_end, **read), reading
        )
        row.update(reference_rows=len(reference), current_rows=current.num_rows)
        result = await asyncio.to_thread(run_drift, current, reference, drift_settings, seed=0)
    except (TooFewRows, record_store.TooManyRecords, NoGatedEvaluation) as exc:
        row.update(status="skipped", reason=str(exc))
        async with db.transaction() as session:
            await _insert(session, row)
        return row
    base = f"{settings.reports_prefix}/{partition_value(request.deployment_id)}/{report_id}"
    report_json = result.report_json.encode()
    snapshot = await asyncio.to_thread(gzip.compress, result.snapshot.encode(), 1, mtime=0)  # fast: 1/3 the size
    await asyncio.gather(
        store.put_named(f"{base}.json", report_json, content_type="application/json"),
        store.put_named(f"{base}.snapshot.json.gz", snapshot, content_type="application/gzip"),
    )
    row.update(
        status="done",
        reason="; ".join(f"{c}: {why}" for c, why in result.dropped_columns.items()) or None,
        reference_rows=result.rows_reference,
        current_rows=result.rows_current,
        drifted_share=result.drifted_share,
        threshold=result.threshold,
        drifted=result.drifted,
        columns=[c.model_dump() for c in result.to_event_columns()],
        json_key=f"{base}.json",
        json_sha256=hashlib.sha256(report_json).hexdigest(),
        snapshot_key=f"{base}.snapshot.json.gz",
    )
    async with db.transaction() as session:
        await _insert(session, row)
        if await _publishes(session, row, drift_settings.consecutive):
            event = runtime.event(
                MonitoringDriftDetected(
                    project=request.project,
                    deployment_id=request.deployment_id,
                    model_version_id=model_version_id,
                    report_id=report_id,
                    reference=request.reference,
                    reference_window=None if evaluation else Window(start=reference_start, end=reference_end),
                    reference_run_id=row.get("reference_run_id"),
                    current_window=Window(start=request.current_start, end=request.current_end),
                    reference_rows=result.rows_reference,
                    current_rows=result.rows_current,
                    drifted_share=result.drifted_share,
                    threshold=result.threshold,
                    columns=result.to_event_columns(),
                    report_sha256=row["json_sha256"],
                ),
                subject=request.deployment_id,
                actor=Actor(request.requested_by, request.correlation_id),
                project=request.project,
            )
            await add_to_outbox(session, event)
            await session.execute(update(drift_reports).where(drift_reports.c.id == report_id).values(detected=True))
            row["detected"] = True
    log.info(
        "monitoring.drift.report",
        deployment_id=request.deployment_id,
        drifted_share=result.drifted_share,
        drifted=result.drifted,
        detected=row.get("detected", False),
    )
    return row


async def _insert(session: AsyncSession, row: dict[str, Any]) -> None:
    """The report's row, made or (a claim) completed."""
    values = {k: v for k, v in row.items() if k != "detected"}
    await session.execute(
        insert(drift_reports)
        .values(**values)
        .on_conflict_do_update(index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"})
    )


async def claim_window(
    db: Database, project: str, deployment_id: str, start: datetime, end: datetime, *, stale_after: timedelta
) -> str | None:
    """Claim the scheduled report of a deployment's window (a ``running`` row, one per window whatever the number of
    replicas): its id, or None when another replica has it. A claim left ``running`` for ``stale_after`` (its
    replica died mid-report) is taken over."""
    claim = {
        "id": str(uuid.uuid4()),
        "project": project,
        "deployment_id": deployment_id,
        "trigger": "schedule",
        "reference": "window",
        "current_start": start,
        "current_end": end,
        "status": "running",
        "requested_by": "monitoring",
    }
    async with db.transaction() as session:
        claimed = (
            await session.execute(
                insert(drift_reports).values(**claim).on_conflict_do_nothing().returning(drift_reports.c.id)
            )
        ).scalar_one_or_none()
        if claimed is None:
            claimed = (
                await session.execute(
                    update(drift_reports)
                    .where(
                        drift_reports.c.deployment_id == deployment_id,
                        drift_reports.c.trigger == "schedule",
                        drift_reports.c.current_start == start,
                        drift_reports.c.status == "running",
                        drift_reports.c.created_at < func.now() - stale_after,
                    )
                    .values(created_at=func.now())
                    .returning(drift_reports.c.id)
                )
            ).scalar_one_or_none()
    return None if claimed is None else str(claimed)


async def _publishes(session: AsyncSession, row: dict[str, Any], consecutive: int) -> bool:
    """A report on request publishes when it drifted; a scheduled one when it completes a run of ``consecutive``
    drifted scheduled windows (its own included)."""
    if not row["drifted"]:
        return False
    if row["trigger"] != "schedule":
        return True
    history = (
        await session.execute(
            select(drift_reports.c.drifted)
            .where(
                drift_reports.c.deployment_id == row["deployment_id"],
                drift_reports.c.trigger == "schedule",
                drift_reports.c.status == "done",
                drift_reports.c.current_start <= row["current_start"],
            )
            .order_by(drift_reports.c.current_start.desc())
            .limit(consecutive + 1)
        )
    ).scalars()
    return Consecutive.of_history(list(reversed([bool(d) for d in history])), consecutive)


async def scheduled_pass(runtime: Runtime, store: ObjectStore, settings: Any, now: datetime | None = None) -> int:
    """One report per ready deployment for the window that just ended (aligned to the window length, so a pass
    repeated or run by two replicas makes one report per window: the unique (deployment, window, trigger))."""
    now = now or datetime.now(UTC)
    window = timedelta(seconds=settings.drift_window_seconds)
    epoch = int(now.timestamp())
    end = datetime.fromtimestamp(epoch - epoch % settings.drift_window_seconds, UTC)
    async with runtime.db.sessions() as session:
        ready = (
            await session.execute(
                select(deployments.c.deployment_id, deployments.c.project).where(deployments.c.status == "ready")
            )
        ).all()
    made, stale_after = 0, timedelta(seconds=settings.drift_claim_seconds)
    for deployment_id, project in ready:
        claimed = await claim_window(runtime.db, project, deployment_id, end - window, end, stale_after=stale_after)
        if claimed is None:
            continue  # made, or being made, by this or another replica
        request = DriftRequest(project, deployment_id, end - window, end, "schedule", "monitoring")
        await run_report(runtime, store, settings, settings.drift, request, report_id=claimed)
        made += 1
    return made


async def drop_reports_before(db: Database, store: ObjectStore, before: datetime, *, limit: int = 500) -> int:
    """Remove reports made before ``before``: their objects (JSON, snapshot, or the HTML of older ones), then their
    rows; returns how many (at most ``limit`` a call)."""
    async with db.sessions() as session:
        old = (
            await session.execute(
                select(
                    drift_reports.c.id, drift_reports.c.json_key, drift_reports.c.snapshot_key, drift_reports.c.html_key
                )
                .where(drift_reports.c.created_at < before)
                .limit(limit)
            )
        ).all()
    keys = [key for row in old for key in row[1:] if key is not None]
    await asyncio.gather(*(store.remove_named(key) for key in keys))  # a missing object is no error: safe to repeat
    if old:
        async with db.transaction() as session:
            await session.execute(delete(drift_reports).where(drift_reports.c.id.in_([row.id for row in old])))
    return len(old)
