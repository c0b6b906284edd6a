"""The SQL of the datasets service's use cases (what routes only read is in :mod:`llmops_datasets.queries`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_datasets.models import dataset_imports, dataset_versions, datasets


async def insert_dataset(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(datasets).values(**values))


async def find_dataset(session: AsyncSession, project: str, name: str) -> Row | None:
    query = select(datasets).where(datasets.c.project == project, datasets.c.name == name)
    return (await session.execute(query)).one_or_none()


async def lock_dataset(session: AsyncSession, dataset_id: str) -> None:
    """Serialise version numbering of one dataset until the transaction ends (an advisory lock needs no grant)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:id))"), {"id": dataset_id})


async def next_version_number(session: AsyncSession, dataset_id: str) -> int:
    query = select(func.coalesce(func.max(dataset_versions.c.version), 0)).where(
        dataset_versions.c.dataset_id == dataset_id
    )
    return (await session.scalar(query)) + 1


async def find_version(session: AsyncSession, dataset_id: str, version: int) -> Row | None:
    query = select(dataset_versions).where(
        dataset_versions.c.dataset_id == dataset_id, dataset_versions.c.version == version
    )
    return (await session.execute(query)).one_or_none()


async def find_version_by_sha(session: AsyncSession, dataset_id: str, sha256: str) -> Row | None:
    query = select(dataset_versions).where(
        dataset_versions.c.dataset_id == dataset_id, dataset_versions.c.sha256 == sha256
    )
    return (await session.execute(query)).one_or_none()


async def latest_version(session: AsyncSession, dataset_id: str) -> Row | None:
    query = (
        select(dataset_versions)
        .where(dataset_versions.c.dataset_id == dataset_id)
        .order_by(dataset_versions.c.version.desc())
        .limit(1)
    )
    return (await session.execute(query)).one_or_none()


async def insert_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(dataset_versions).values(**values))


async def deprecate_version(session: AsyncSession, version_id: str, *, by: str, reason: str) -> None:
    await session.execute(
        update(dataset_versions)
        .where(dataset_versions.c.id == version_id)
        .values(deprecated_at=func.now(), deprecated_by=by, deprecation_reason=reason)
    )


async def find_import(session: AsyncSession, project: str, import_id: str) -> Row | None:
    query = select(dataset_imports).where(
        dataset_imports.c.project == project, dataset_imports.c.import_id == import_id
    )
    return (await session.execute(query)).one_or_none()


async def insert_import(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(dataset_imports).values(**values))
