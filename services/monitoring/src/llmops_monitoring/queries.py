"""What the monitoring routes only read; each statement keeps to the caller's project."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.errors import Problem
from llmops_monitoring.models import deployments, drift_reports

#: Columns of a report row the API does not show (object store keys).
_HIDDEN = ("json_key", "html_key", "snapshot_key")


def report_out(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row._mapping if hasattr(row, "_mapping") else row).items() if k not in _HIDDEN}


async def deployment(session: AsyncSession, project: str, deployment_id: str) -> Any | None:
    return (
        await session.execute(
            select(deployments).where(deployments.c.deployment_id == deployment_id, deployments.c.project == project)
        )
    ).one_or_none()


async def drift_reports_of(
    session: AsyncSession, project: str, deployment_id: str | None, limit: int
) -> list[dict[str, Any]]:
    query = select(drift_reports).where(drift_reports.c.project == project)
    if deployment_id is not None:
        query = query.where(drift_reports.c.deployment_id == deployment_id)
    rows = (await session.execute(query.order_by(drift_reports.c.created_at.desc()).limit(limit))).all()
    return [report_out(r) for r in rows]


async def drift_report(session: AsyncSession, project: str, report_id: str) -> Any:
    row = (
        await session.execute(
            select(drift_reports).where(drift_reports.c.id == report_id, drift_reports.c.project == project)
        )
    ).one_or_none()
    if row is None:
        raise Problem(404, f"no drift report {report_id} in project {project!r}")
    return row
