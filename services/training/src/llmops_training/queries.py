"""What the training service's routes read. Every statement filters by the project, directly or through the job it
belongs to, so a read cannot cross projects whatever id it is given."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_training.models import alias_moves, base_models, job_logs, job_metrics, jobs, model_aliases, model_versions


def _job_id(project: str, job_id: str):
    """The job ``job_id`` if it is ``project``'s, as a subquery: the scope of the statements on a job's rows."""
    return select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.project == project).scalar_subquery()


async def list_base_models(session: AsyncSession, project: str) -> list[Row]:
    query = select(base_models).where(base_models.c.project == project).order_by(base_models.c.name)
    return list((await session.execute(query)).all())


async def list_jobs(session: AsyncSession, project: str, *, status: str | None, limit: int, offset: int) -> list[Row]:
    query = select(jobs).where(jobs.c.project == project)
    if status:
        query = query.where(jobs.c.status == status)
    query = query.order_by(jobs.c.created_at.desc()).limit(limit).offset(offset)
    return list((await session.execute(query)).all())


async def job_metrics_of(session: AsyncSession, project: str, job_id: str) -> list[Row]:
    query = select(job_metrics).where(job_metrics.c.job_id == _job_id(project, job_id)).order_by(job_metrics.c.step)
    return list((await session.execute(query)).all())


async def logs_of(session: AsyncSession, project: str, job_id: str, *, after: int, limit: int) -> list[Row]:
    query = (
        select(job_logs)
        .where(job_logs.c.job_id == _job_id(project, job_id), job_logs.c.id > after)
        .order_by(job_logs.c.id)
        .limit(limit)
    )
    return list((await session.execute(query)).all())


async def model_versions_of(session: AsyncSession, project: str, name: str | None = None) -> list[Row]:
    """The project's model versions (of model ``name`` only, if given), by name and version."""
    query = select(model_versions).where(model_versions.c.project == project)
    if name is not None:
        query = query.where(model_versions.c.name == name)
    return list((await session.execute(query.order_by(model_versions.c.name, model_versions.c.version))).all())


async def aliases_of(session: AsyncSession, project: str, name: str | None = None) -> list[Row]:
    """The project's model aliases (of model ``name`` only, if given), by name and alias: one query for a listing."""
    query = select(model_aliases).where(model_aliases.c.project == project)
    if name is not None:
        query = query.where(model_aliases.c.name == name)
    return list((await session.execute(query.order_by(model_aliases.c.name, model_aliases.c.alias))).all())


async def alias_history(session: AsyncSession, project: str, name: str, alias: str) -> list[Row]:
    query = (
        select(alias_moves)
        .where(alias_moves.c.project == project, alias_moves.c.name == name, alias_moves.c.alias == alias)
        .order_by(alias_moves.c.id)
    )
    return list((await session.execute(query)).all())
