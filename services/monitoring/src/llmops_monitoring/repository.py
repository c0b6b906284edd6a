"""The monitoring service's writes: the deployments projection and metric buckets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_monitoring.models import deployments
from llmops_schemas import CloudEvent
from llmops_schemas.events import DeploymentRequested


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
