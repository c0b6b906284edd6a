"""HTTP routes of drift: reports on request, the list of a deployment's reports, one report's numbers, its HTML and
JSON (from the object store), and the pinned baseline window a deployment's reports compare against."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from llmops.errors import Problem, unprocessable
from llmops.http import CurrentRuntime, Session, get_settings
from llmops.openapi import problems
from llmops.storage import ObjectNotFound
from llmops.types import UUIDPath
from llmops_monitoring import drift_service
from llmops_monitoring.api import time_range
from llmops_monitoring.models import deployments, drift_baselines, drift_reports
from llmops_monitoring.permissions import Reader, Writer
from llmops_monitoring.settings import MonitoringSettings

router = APIRouter(prefix="/projects/{project}/monitoring/drift", tags=["monitoring"])
SettingsDep = Annotated[MonitoringSettings, Depends(get_settings)]
DeploymentId = Annotated[str, Field(min_length=1, max_length=256)]
DeploymentPath = Annotated[str, PathParam(min_length=1, max_length=256)]


class DriftIn(BaseModel):
    deployment_id: DeploymentId
    start: datetime | None = Field(default=None, description="the current window's start (default: end - 1 hour)")
    end: datetime | None = Field(default=None, description="the current window's end (default: now)")
    reference_start: datetime | None = Field(
        default=None, description="default: the pinned baseline, else the window just before"
    )
    reference_end: datetime | None = None


class BaselineIn(BaseModel):
    start: datetime
    end: datetime


async def _deployment(session, project: str, deployment_id: str, location: str = "body") -> Any:
    row = (
        await session.execute(
            select(deployments).where(deployments.c.deployment_id == deployment_id, deployments.c.project == project)
        )
    ).one_or_none()
    if row is None:
        raise unprocessable(f"no deployment {deployment_id!r} in this project", "deployment_id", location)
    return row


def _out(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out.pop("json_key", None)
    out.pop("html_key", None)
    return out


@router.post(
    "",
    status_code=201,
    summary="Run a drift report of a deployment's window against a reference, now",
    description="Evidently on the records of both windows (sampled to a bound); the report's HTML and JSON are kept."
    " A window with too few records gives a report with status skipped and the reason.",
    responses=problems(422),
)
async def create(
    body: DriftIn, scope: Writer, session: Session, runtime: CurrentRuntime, settings: SettingsDep
) -> dict[str, Any]:
    await _deployment(session, scope.project, body.deployment_id)
    start, end = time_range(settings, body.start, body.end, default=timedelta(hours=1))
    if (body.reference_start is None) != (body.reference_end is None):
        raise unprocessable("give both reference_start and reference_end, or neither", "reference_end")
    reference = None
    if body.reference_start is not None:
        reference = time_range(settings, body.reference_start, body.reference_end, default=timedelta(hours=1))
    request = drift_service.DriftRequest(
        project=scope.project,
        deployment_id=body.deployment_id,
        current_start=start,
        current_end=end,
        trigger="request",
        requested_by=scope.actor.subject,
        correlation_id=scope.actor.correlation_id,
        reference_start=reference[0] if reference else None,
        reference_end=reference[1] if reference else None,
    )
    row = await drift_service.run_report(runtime, runtime.store, settings, settings.drift, request)
    return {k: v for k, v in row.items() if k not in ("json_key", "html_key")}


@router.get("", summary="Drift reports of the project (newest first)")
async def list_reports(
    scope: Reader,
    session: Session,
    deployment_id: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    query = select(drift_reports).where(drift_reports.c.project == scope.project)
    if deployment_id is not None:
        query = query.where(drift_reports.c.deployment_id == deployment_id)
    rows = (await session.execute(query.order_by(drift_reports.c.created_at.desc()).limit(limit))).all()
    return {"reports": [_out(r) for r in rows]}


async def _report(session, project: str, report_id: str) -> Any:
    row = (
        await session.execute(
            select(drift_reports).where(drift_reports.c.id == report_id, drift_reports.c.project == project)
        )
    ).one_or_none()
    if row is None:
        raise Problem(404, f"no drift report {report_id} in project {project!r}")
    return row


@router.get("/{report_id}", summary="One drift report's numbers", responses=problems(404))
async def show(report_id: UUIDPath, scope: Reader, session: Session) -> dict[str, Any]:
    return _out(await _report(session, scope.project, report_id))


@router.get(
    "/{report_id}/html",
    summary="The report as Evidently renders it (HTML)",
    response_class=Response,
    responses={**problems(404, 409), 200: {"content": {"text/html": {}}}},
)
async def html(report_id: UUIDPath, scope: Reader, session: Session, runtime: CurrentRuntime) -> Response:
    return await _stored(runtime, await _report(session, scope.project, report_id), "html_key", "text/html")


@router.get(
    "/{report_id}/json",
    summary="The report as Evidently writes it (JSON)",
    response_class=Response,
    responses={**problems(404, 409), 200: {"content": {"application/json": {}}}},
)
async def json_report(report_id: UUIDPath, scope: Reader, session: Session, runtime: CurrentRuntime) -> Response:
    return await _stored(runtime, await _report(session, scope.project, report_id), "json_key", "application/json")


async def _stored(runtime, row: Any, column: str, media_type: str) -> Response:
    key = getattr(row, column)
    if key is None:
        raise Problem(409, f"report {row.id} has no {column[:-4]} ({row.status}: {row.reason})")
    try:
        return Response(await runtime.store.get_named(key), media_type=media_type)
    except ObjectNotFound as exc:
        raise Problem(404, f"the {column[:-4]} of report {row.id} is no longer stored") from exc


@router.put(
    "/baselines/{deployment_id}",
    summary="Pin the reference window of a deployment's drift reports",
    responses=problems(422),
)
async def pin(
    deployment_id: DeploymentPath, body: BaselineIn, scope: Writer, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    await _deployment(session, scope.project, deployment_id, "path")
    start, end = time_range(settings, body.start, body.end, default=timedelta(hours=1))
    values = {"project": scope.project, "start": start, "end": end, "pinned_by": scope.actor.subject}
    statement = insert(drift_baselines).values(deployment_id=deployment_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["deployment_id"], set_={**values, "pinned_at": datetime.now(UTC)}
        )
    )
    return {"deployment_id": deployment_id, **values}


@router.delete("/baselines/{deployment_id}", status_code=204, summary="Unpin: compare with the window before again")
async def unpin(deployment_id: DeploymentPath, scope: Writer, session: Session) -> Response:
    await session.execute(
        delete(drift_baselines).where(
            drift_baselines.c.deployment_id == deployment_id, drift_baselines.c.project == scope.project
        )
    )
    return Response(status_code=204)
