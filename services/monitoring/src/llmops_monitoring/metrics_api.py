"""HTTP routes of the metrics and unusual outputs: summaries of a time range per group (and per step), and the flag
counts per window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from llmops.http import Session, get_settings
from llmops.openapi import problems
from llmops_monitoring import anomaly_store, metrics_store
from llmops_monitoring.api import time_range
from llmops_monitoring.permissions import Reader
from llmops_monitoring.settings import MonitoringSettings

router = APIRouter(prefix="/projects/{project}/monitoring", tags=["monitoring"])
SettingsDep = Annotated[MonitoringSettings, Depends(get_settings)]
Dimension = Literal["route", "deployment_id", "model_version_id", "user"]
Id = Annotated[str | None, Query(min_length=1, max_length=256)]


@router.get(
    "/metrics",
    summary="Requests, errors, latency and TTFT percentiles, tokens, tokens/s, cost, feedback and flags of a range",
    description="Buckets of one minute (ranges up to six hours in the last days) or one hour, merged per group:"
    " percentiles come from merged sketches (within 1 % of a true value at that rank), never averaged. Grouped or"
    " filtered by user, the metrics are counts, tokens, cost, errors, flags and feedback, without percentiles.",
    responses=problems(422),
)
async def metrics(
    scope: Reader,
    session: Session,
    settings: SettingsDep,
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: Annotated[list[Dimension], Query(max_length=4)] = [],  # noqa: B006 (FastAPI copies defaults)
    step: Annotated[bool, Query(description="one summary per bucket start as well (a time series)")] = False,
    resolution: Literal["auto", "minute", "hour"] = "auto",
    route: Id = None,
    deployment_id: Id = None,
    model_version_id: Id = None,
    user: Id = None,
) -> dict[str, Any]:
    start, end = time_range(settings, start, end, default=timedelta(hours=1))
    chosen = metrics_store.resolution_for(start, end, minute_days=settings.minute_buckets_days, requested=resolution)
    filters = {
        name: value
        for name, value in {
            "route": route,
            "deployment_id": deployment_id,
            "model_version_id": model_version_id,
            "user": user,
        }.items()
        if value is not None
    }
    buckets = await metrics_store.read_buckets(
        session,
        project=scope.project,
        start=start,
        end=end,
        resolution=chosen,
        filters=filters,
        limit=settings.max_query_buckets,
        by_user=user is not None or "user" in group_by,
    )
    return {
        "start": start,
        "end": end,
        "resolution": chosen,
        "group_by": group_by,
        "groups": metrics_store.group(buckets, list(dict.fromkeys(group_by)), step=step),
    }


@router.get(
    "/anomalies",
    summary="Flagged records per window and deployment (counts, a few request ids), and whether it was assessed",
    responses=problems(422),
)
async def anomalies(
    scope: Reader,
    session: Session,
    settings: SettingsDep,
    start: datetime | None = None,
    end: datetime | None = None,
    deployment_id: Id = None,
) -> dict[str, Any]:
    start, end = time_range(settings, start, end, default=timedelta(hours=6))
    windows = await anomaly_store.windows(session, scope.project, start, end, deployment_id)
    return {"start": start, "end": end, "window_seconds": settings.anomaly_window_seconds, "windows": windows}
