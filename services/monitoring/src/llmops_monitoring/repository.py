"""The monitoring service's writes: the projections of deployments and budgets, and the request index."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_monitoring.models import budgets, deployments, request_index
from llmops_schemas import CloudEvent
from llmops_schemas.events import BudgetSet, DeploymentRequested


async def deployment_requested(session: AsyncSession, event: CloudEvent, v: DeploymentRequested) -> None:
    model = v.model
    await session.execute(
        insert(deployments)
        .values(
            deployment_id=v.deployment_id,
            project=v.project,
            name=v.name,
            model_version_id=model.model_version_id if model else None,
            model_name=model.name if model else None,
            model_version=model.version if model else None,
            status="requested",
            requested_at=event.time,
            updated_at=event.time,
        )
        .on_conflict_do_nothing(index_elements=["deployment_id"])
    )


async def deployment_status(session: AsyncSession, deployment_id: str, status: str, at: datetime) -> None:
    """The deployment's latest status by event time (events of one deployment may come out of order on replays)."""
    await session.execute(
        update(deployments)
        .where(deployments.c.deployment_id == deployment_id, deployments.c.updated_at <= at)
        .values(status=status, updated_at=at)
    )


async def set_budget(session: AsyncSession, event: CloudEvent, v: BudgetSet) -> None:
    """The budget's latest definition by event time."""
    values = {
        "project": v.project,
        "scope": v.scope,
        "subject": v.subject,
        "period": v.period,
        "max_tokens": v.max_tokens,
        "max_cost": v.max_cost,
        "set_at": event.time,
    }
    statement = insert(budgets).values(budget_id=v.budget_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["budget_id"], set_=values, where=budgets.c.set_at <= statement.excluded.set_at
        )
    )


_INDEX_COLUMNS = ("request_id", "project", "route", "deployment_id", "model_version_id", "user")
# One statement for a batch, whatever its size: each column one array (S608: built from constants only).
_INDEX = text(
    'INSERT INTO request_index (request_id, project, route, deployment_id, model_version_id, "user", time)'  # noqa: S608
    " SELECT c1, c2, c3, c4, c5, c6, timestamptz 'epoch' + t * interval '1 microsecond'"
    f" FROM unnest({', '.join(f'CAST(:{c} AS text[])' for c in _INDEX_COLUMNS)}, CAST(:time AS bigint[]))"
    " AS k (c1, c2, c3, c4, c5, c6, t) ON CONFLICT DO NOTHING"
)


async def index_requests(session: AsyncSession, records: pa.Table) -> None:
    """Remember where each record (but shadow copies) was counted, for feedback on it."""
    records = records.filter(pc.invert(records["shadow"]))
    if not records.num_rows:
        return
    values: dict[str, Any] = {name: pc.fill_null(records[name], "").to_pylist() for name in _INDEX_COLUMNS}
    values["time"] = records["time"].cast(pa.int64()).to_numpy().tolist()  # microseconds: no datetime per record
    await session.execute(_INDEX, values)


async def request_dimensions(session: AsyncSession, project: str, request_id: str) -> dict[str, str] | None:
    row = (
        await session.execute(
            select(request_index).where(request_index.c.project == project, request_index.c.request_id == request_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return {name: getattr(row, name) for name in ("route", "deployment_id", "model_version_id", "user")}


async def drop_requests_before(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(request_index).where(request_index.c.time < before))
