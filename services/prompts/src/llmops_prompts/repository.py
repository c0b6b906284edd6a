"""The SQL of the prompts service's use cases (what routes only read is in :mod:`llmops_prompts.queries`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_prompts.models import label_moves, labels, prompt_versions, prompts, test_cases


async def insert_prompt(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(prompts).values(**values))


async def find_prompt(session: AsyncSession, project: str, name: str) -> Row | None:
    return (
        await session.execute(select(prompts).where(prompts.c.project == project, prompts.c.name == name))
    ).one_or_none()


async def lock_prompt(session: AsyncSession, prompt_id: str, scope: str) -> None:
    """Serialise writers of one prompt's ``scope`` (versions, or one label) until the transaction ends."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"{prompt_id}:{scope}"})


async def latest_version(session: AsyncSession, prompt_id: str) -> Row | None:
    query = (
        select(prompt_versions)
        .where(prompt_versions.c.prompt_id == prompt_id)
        .order_by(prompt_versions.c.version.desc())
        .limit(1)
    )
    return (await session.execute(query)).one_or_none()


async def insert_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(prompt_versions).values(**values))


async def find_version(session: AsyncSession, prompt_id: str, version: int) -> Row | None:
    query = select(prompt_versions).where(
        prompt_versions.c.prompt_id == prompt_id, prompt_versions.c.version == version
    )
    return (await session.execute(query)).one_or_none()


async def find_label(session: AsyncSession, prompt_id: str, name: str) -> Row | None:
    query = (
        select(labels, prompt_versions.c.version)
        .join(prompt_versions, prompt_versions.c.id == labels.c.version_id)
        .where(labels.c.prompt_id == prompt_id, labels.c.name == name)
    )
    return (await session.execute(query)).one_or_none()


async def set_label(
    session: AsyncSession, prompt_id: str, name: str, *, version_id: str, protected: bool, by: str
) -> None:
    statement = pg_insert(labels).values(
        prompt_id=prompt_id, name=name, version_id=version_id, protected=protected, updated_by=by
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[labels.c.prompt_id, labels.c.name],
            set_={"version_id": version_id, "protected": protected, "updated_by": by, "updated_at": func.now()},
        )
    )


async def record_move(session: AsyncSession, values: dict[str, Any]) -> Row:
    return (await session.execute(insert(label_moves).values(**values).returning(label_moves))).one()


async def insert_test_case(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(test_cases).values(**values))


async def find_test_case(session: AsyncSession, prompt_id: str, name: str) -> Row | None:
    query = select(test_cases).where(test_cases.c.prompt_id == prompt_id, test_cases.c.name == name)
    return (await session.execute(query)).one_or_none()


async def list_test_cases(session: AsyncSession, prompt_id: str) -> list[Row]:
    query = select(test_cases).where(test_cases.c.prompt_id == prompt_id).order_by(test_cases.c.name)
    return list((await session.execute(query)).all())
