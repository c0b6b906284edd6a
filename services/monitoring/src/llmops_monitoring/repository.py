"""The monitoring service's writes: the projections of deployments and budgets, and the request index."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import case, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_monitoring.models import budgets, deployments, request_index
from llmops_schemas import CloudEvent
from llmops_schemas.events import BudgetSet, DeploymentFailed, DeploymentReady, DeploymentRequested, DeploymentStopped


async def deployment_requested(session: AsyncSession, event: CloudEvent, v: DeploymentRequested) -> None:
    """What was asked for. A status that came first (a request dead-lettered and replayed later) is kept: the
    status is the latest by event time, whichever of the events arrived first."""
    model = v.model
    statement = insert(deployments).values(
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
    newer = deployments.c.updated_at < statement.excluded.updated_at
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["deployment_id"],
            set_={
                "name": statement.excluded.name,
                "model_version_id": statement.excluded.model_version_id,
                "model_name": statement.excluded.model_name,
                "model_version": statement.excluded.model_version,
                "requested_at": statement.excluded.requested_at,
                "status": case((newer, statement.excluded.status), else_=deployments.c.status),
                "updated_at": func.greatest(deployments.c.updated_at, statement.excluded.updated_at),
            },
            where=deployments.c.requested_at.is_(None),  # once known, a request is not applied again
        )
    )


#: The status each deployment event sets.
STATUS_OF = {
    DeploymentReady.event_type: "ready",
    DeploymentFailed.event_type: "failed",
    DeploymentStopped.event_type: "stopped",
}


async def deployment_status(
    session: AsyncSession, event: CloudEvent, v: DeploymentReady | DeploymentFailed | DeploymentStopped
) -> None:
    """The deployment's latest status by event time (events of one deployment may come out of order on replays); a
    status before its request makes the row, which the request completes when it comes."""
    statement = insert(deployments).values(
        deployment_id=v.deployment_id,
        project=v.project,
        model_version_id=getattr(v, "model_version_id", None),
        status=STATUS_OF[event.type],
        updated_at=event.time,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["deployment_id"],
            set_={"status": statement.excluded.status, "updated_at": statement.excluded.updated_at},
            where=deployments.c.updated_at <= statement.excluded.updated_at,
        )
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
