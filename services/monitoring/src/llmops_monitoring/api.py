"""HTTP routes of the monitoring service. Every route is scoped to a project the caller's token names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from llmops.errors import unprocessable
from llmops.http import CurrentRuntime, get_settings
from llmops.openapi import problems
from llmops_monitoring import record_store
from llmops_monitoring.permissions import RecordReader
from llmops_monitoring.settings import MonitoringSettings

router = APIRouter(prefix="/projects/{project}/monitoring", tags=["monitoring"])
SettingsDep = Annotated[MonitoringSettings, Depends(get_settings)]


def time_range(
    settings: MonitoringSettings, start: datetime | None, end: datetime | None, *, default: timedelta
) -> tuple[datetime, datetime]:
    """A checked ``[start, end)``: aware UTC, start before end, inside the retention."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    start = _utc(start) if start is not None else end - default
    if start >= end:
        raise unprocessable("start must be before end", "start", "query")
    if start < datetime.now(UTC) - timedelta(days=settings.retention_days):
        raise unprocessable(
            f"start is older than the retention of {settings.retention_days} days: no records are kept there",
            "start",
            "query",
        )
    return start, end


@router.get(
    "/records",
    summary="Inference records of a time range (newest last), as the record store holds them",
    responses=problems(422),
)
async def records(
    scope: RecordReader,
    runtime: CurrentRuntime,
    settings: SettingsDep,
    deployment_id: Annotated[str | None, Query(max_length=256)] = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    start, end = time_range(settings, start, end, default=timedelta(hours=1))
    try:
        table = await record_store.read_table(
            runtime.db,
            runtime.store,
            start,
            end,
            project=scope.project,
            deployment_id=deployment_id,
            max_rows=settings.max_read_records,
        )
    except record_store.TooManyRecords as exc:
        raise unprocessable(f"{exc}: narrow the range, or name a deployment", "start", "query") from exc
    newest = table.slice(max(0, table.num_rows - limit))  # Python objects for these only
    return {"start": start, "end": end, "total": table.num_rows, "records": newest.to_pylist()}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
