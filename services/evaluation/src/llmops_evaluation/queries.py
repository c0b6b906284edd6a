"""What the evaluation service's routes read. Every statement filters by the project, directly or through the run
it belongs to, so a read cannot cross projects whatever id it is given."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_evaluation.models import runs, suite_versions, suites


async def latest_suites(session: AsyncSession, project: str, limit: int, offset: int) -> list[Row]:
    latest = (
        select(suite_versions.c.suite_id, func.max(suite_versions.c.version).label("version"))
        .where(suite_versions.c.project == project)
        .group_by(suite_versions.c.suite_id)
        .subquery()
    )
    query = (
        select(suite_versions, suites.c.name)
        .join(suites, suites.c.id == suite_versions.c.suite_id)
        .join(latest, (latest.c.suite_id == suite_versions.c.suite_id) & (latest.c.version == suite_versions.c.version))
        .order_by(suites.c.name)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.execute(query)).all())


async def list_runs(
    session: AsyncSession, project: str, *, suite: str | None, model: str | None, limit: int, offset: int
) -> list[Row]:
    query = select(runs).where(runs.c.project == project)
    if suite is not None:
        names = select(suite_versions.c.id).join(suites, suites.c.id == suite_versions.c.suite_id)
        query = query.where(
            runs.c.suite_version_id.in_(names.where(suites.c.name == suite, suites.c.project == project))
        )
    if model is not None:
        query = query.where(runs.c.model_name == model)
    query = query.order_by(runs.c.created_at.desc(), runs.c.id).limit(limit).offset(offset)
    return list((await session.execute(query)).all())
