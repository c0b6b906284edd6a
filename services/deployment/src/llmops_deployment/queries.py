"""What the deployment service's routes read. Every statement filters by the project, directly or through the
deployment it belongs to, so a read cannot cross projects whatever id it is given."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_deployment.models import deployment_logs, deployment_replicas, deployments, inferences, model_versions


def _deployment_id(project: str, deployment_id: str):
    """The deployment ``deployment_id`` if it is ``project``'s, as a subquery: the scope of its rows' statements."""
    return (
        select(deployments.c.id)
        .where(deployments.c.id == deployment_id, deployments.c.project == project)
        .scalar_subquery()
    )


async def list_deployments(
    session: AsyncSession, project: str, *, status: str | None, limit: int, offset: int
) -> list[Row]:
    query = select(deployments).where(deployments.c.project == project)
    if status is not None:
        query = query.where(deployments.c.status == status)
    query = query.order_by(deployments.c.created_at.desc(), deployments.c.id).limit(limit).offset(offset)
    return list((await session.execute(query)).all())


async def replicas_of(session: AsyncSession, project: str, deployment_id: str) -> list[Row]:
    query = (
        select(deployment_replicas)
        .where(deployment_replicas.c.deployment_id == _deployment_id(project, deployment_id))
        .order_by(deployment_replicas.c.replica)
    )
    return list((await session.execute(query)).all())


async def logs_of(session: AsyncSession, project: str, deployment_id: str, *, after: int, limit: int) -> list[Row]:
    query = (
        select(deployment_logs)
        .where(deployment_logs.c.deployment_id == _deployment_id(project, deployment_id), deployment_logs.c.id > after)
        .order_by(deployment_logs.c.id)
        .limit(limit)
    )
    return list((await session.execute(query)).all())


async def find_inference(session: AsyncSession, project: str, request_id: str) -> Row | None:
    query = select(inferences).where(inferences.c.request_id == request_id, inferences.c.project == project)
    return (await session.execute(query)).one_or_none()


async def find_model_version_by_id(session: AsyncSession, project: str, model_version_id: str) -> Row | None:
    query = select(model_versions).where(
        model_versions.c.model_version_id == model_version_id, model_versions.c.project == project
    )
    return (await session.execute(query)).one_or_none()
