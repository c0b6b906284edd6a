"""The monitoring service's use cases behind its routes: drift reports on request, and the pinned baselines."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.errors import Problem, unprocessable
from llmops.runtime import Actor, Runtime
from llmops.storage import ObjectNotFound
from llmops_monitoring import drift_service, evaluation_reference, queries
from llmops_monitoring.drift import render_html
from llmops_monitoring.models import drift_baselines
from llmops_monitoring.settings import MonitoringSettings


async def known_deployment(session: AsyncSession, project: str, deployment_id: str, location: str = "body") -> Any:
    row = await queries.deployment(session, project, deployment_id)
    if row is None:
        raise unprocessable(f"no deployment {deployment_id!r} in this project", "deployment_id", location)
    return row


async def request_drift_report(
    session: AsyncSession,
    runtime: Runtime,
    settings: MonitoringSettings,
    *,
    project: str,
    actor: Actor,
    deployment_id: str,
    current: tuple[datetime, datetime],
    reference: tuple[datetime, datetime] | None,
    reference_kind: str = "window",
) -> dict[str, Any]:
    deployment = await known_deployment(session, project, deployment_id)
    if reference_kind == "evaluation_dataset":
        try:
            await evaluation_reference.gating_run(session, project, deployment.model_version_id)
        except evaluation_reference.NoGatedEvaluation as exc:
            raise unprocessable(f"deployment {deployment_id!r}: {exc}", "reference") from exc
    request = drift_service.DriftRequest(
        project=project,
        deployment_id=deployment_id,
        current_start=current[0],
        current_end=current[1],
        trigger="request",
        requested_by=actor.subject,
        correlation_id=actor.correlation_id,
        reference_start=reference[0] if reference else None,
        reference_end=reference[1] if reference else None,
        reference=reference_kind,
    )
    row = await drift_service.run_report(runtime, runtime.store, settings, settings.drift, request)
    return queries.report_out(row)


async def stored_report(runtime: Runtime, row: Any, kind: str) -> bytes:
    """The report's stored ``html`` or ``json``: the HTML rendered from its snapshot (or, for a report made before
    snapshots were kept, as stored)."""
    if kind == "html" and row.html_key is None and row.snapshot_key is not None:
        snapshot = await _stored(runtime, row, "snapshot")
        return await asyncio.to_thread(lambda: render_html(gzip.decompress(snapshot).decode()).encode())
    return await _stored(runtime, row, kind)


async def _stored(runtime: Runtime, row: Any, kind: str) -> bytes:
    key = getattr(row, f"{kind}_key")
    if key is None:
        raise Problem(409, f"report {row.id} has no {kind}: it was {row.status} ({row.reason})")
    try:
        return await runtime.store.get_named(key)
    except ObjectNotFound as exc:
        raise Problem(404, f"the {kind} of report {row.id} is no longer stored") from exc


async def pin_baseline(
    session: AsyncSession, *, project: str, actor: Actor, deployment_id: str, start: datetime, end: datetime
) -> dict[str, Any]:
    await known_deployment(session, project, deployment_id, "path")
    values = {"project": project, "start": start, "end": end, "pinned_by": actor.subject}
    statement = insert(drift_baselines).values(deployment_id=deployment_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["deployment_id"], set_={**values, "pinned_at": datetime.now(UTC)}
        )
    )
    return {"deployment_id": deployment_id, **values}


async def unpin_baseline(session: AsyncSession, *, project: str, deployment_id: str) -> None:
    await session.execute(
        delete(drift_baselines).where(
            drift_baselines.c.deployment_id == deployment_id, drift_baselines.c.project == project
        )
    )
