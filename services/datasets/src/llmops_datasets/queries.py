"""What the datasets service's routes read. Every statement reaches its rows through the dataset's project, so a
read cannot cross projects whatever it is given."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_datasets.models import dataset_versions, datasets


def _dataset_id(project: str, name: str):
    """The id of the dataset ``name`` of ``project``, as a subquery: the scope of the statements on its versions."""
    return select(datasets.c.id).where(datasets.c.project == project, datasets.c.name == name).scalar_subquery()


async def list_datasets(
    session: AsyncSession, project: str, *, search: str | None, row_format: str | None, limit: int, offset: int
) -> list[Row]:
    latest = (
        select(func.max(dataset_versions.c.version))
        .where(dataset_versions.c.dataset_id == datasets.c.id)
        .scalar_subquery()
        .label("latest_version")
    )
    query = select(datasets, latest).where(datasets.c.project == project)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(datasets.c.name.ilike(pattern) | datasets.c.description.ilike(pattern))
    if row_format:
        query = query.where(datasets.c.format == row_format)
    query = query.order_by(datasets.c.name).limit(limit).offset(offset)
    return list((await session.execute(query)).all())


async def versions(session: AsyncSession, project: str, name: str) -> list[Row]:
    query = (
        select(dataset_versions)
        .where(dataset_versions.c.dataset_id == _dataset_id(project, name))
        .order_by(dataset_versions.c.version)
    )
    return list((await session.execute(query)).all())
