"""HTTP routes of drift: reports on request, the list of a deployment's reports, one report's numbers, its HTML and
JSON (from the object store), and the pinned baseline window a deployment's reports compare against."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field

from llmops.errors import unprocessable
from llmops.http import CurrentRuntime, Session, get_settings
from llmops.openapi import problems
from llmops.types import UUIDPath
from llmops_monitoring import queries, service
from llmops_monitoring.api import time_range
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
    reference: Literal["window", "evaluation_dataset"] = Field(
        default="window",
        description="window: the reference window above; evaluation_dataset: the examples of the evaluation run that"
        " gated the deployment's model version",
    )


class BaselineIn(BaseModel):
    start: datetime
    end: datetime


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
    current = time_range(settings, body.start, body.end, default=timedelta(hours=1))
    if (body.reference_start is None) != (body.reference_end is None):
        raise unprocessable("give both reference_start and reference_end, or neither", "reference_end")
    if body.reference == "evaluation_dataset" and body.reference_start is not None:
        raise unprocessable("a reference window goes with reference=window only", "reference")
    reference = None
    if body.reference_start is not None:
        reference = time_range(settings, body.reference_start, body.reference_end, default=timedelta(hours=1))
    return await service.request_drift_report(
        session,
        runtime,
        settings,
        project=scope.project,
        actor=scope.actor,
        deployment_id=body.deployment_id,
        current=current,
        reference=reference,
        reference_kind=body.reference,
    )


@router.get("", summary="Drift reports of the project (newest first)")
async def list_reports(
    scope: Reader,
    session: Session,
    deployment_id: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return {"reports": await queries.drift_reports_of(session, scope.project, deployment_id, limit)}


@router.get("/{report_id}", summary="One drift report's numbers", responses=problems(404))
async def show(report_id: UUIDPath, scope: Reader, session: Session) -> dict[str, Any]:
    return queries.report_out(await queries.drift_report(session, scope.project, report_id))


@router.get(
    "/{report_id}/html",
    summary="The report as Evidently renders it (HTML)",
    response_class=Response,
    responses={**problems(404, 409), 200: {"content": {"text/html": {}}}},
)
async def html(report_id: UUIDPath, scope: Reader, session: Session, runtime: CurrentRuntime) -> Response:
    row = await queries.drift_report(session, scope.project, report_id)
    return Response(await service.stored_report(runtime, row, "html"), media_type="text/html")


@router.get(
    "/{report_id}/json",
    summary="The report as Evidently writes it (JSON)",
    response_class=Response,
    responses={**problems(404, 409), 200: {"content": {"application/json": {}}}},
)
async def json_report(report_id: UUIDPath, scope: Reader, session: Session, runtime: CurrentRuntime) -> Response:
    row = await queries.drift_report(session, scope.project, report_id)
    return Response(await service.stored_report(runtime, row, "json"), media_type="application/json")


@router.put(
    "/baselines/{deployment_id}",
    summary="Pin the reference window of a deployment's drift reports",
    responses=problems(422),
)
async def pin(
    deployment_id: DeploymentPath, body: BaselineIn, scope: Writer, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    start, end = time_range(settings, body.start, body.end, default=timedelta(hours=1))
    return await service.pin_baseline(
        session, project=scope.project, actor=scope.actor, deployment_id=deployment_id, start=start, end=end
    )


@router.delete("/baselines/{deployment_id}", status_code=204, summary="Unpin: compare with the window before again")
async def unpin(deployment_id: DeploymentPath, scope: Writer, session: Session) -> Response:
    await service.unpin_baseline(session, project=scope.project, deployment_id=deployment_id)
    return Response(status_code=204)
