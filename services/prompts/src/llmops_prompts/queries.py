"""What the prompts service's routes read. Every statement reaches its rows through the prompt's project, so a read
cannot cross projects whatever id it is given."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_prompts.models import label_moves, labels, prompt_versions, prompts, test_cases


def _prompt_id(project: str, name: str):
    """The id of the prompt ``name`` of ``project``, as a subquery: the scope of every statement below."""
    return select(prompts.c.id).where(prompts.c.project == project, prompts.c.name == name).scalar_subquery()


async def list_prompts(session: AsyncSession, project: str, *, limit: int, offset: int) -> list[Row]:
    query = select(prompts).where(prompts.c.project == project).order_by(prompts.c.name).limit(limit).offset(offset)
    return list((await session.execute(query)).all())


async def versions(session: AsyncSession, project: str, name: str) -> list[Row]:
    query = (
        select(prompt_versions)
        .where(prompt_versions.c.prompt_id == _prompt_id(project, name))
        .order_by(prompt_versions.c.version)
    )
    return list((await session.execute(query)).all())


async def labels_of(session: AsyncSession, project: str, name: str) -> list[Row]:
    query = (
        select(labels, prompt_versions.c.version)
        .join(prompt_versions, prompt_versions.c.id == labels.c.version_id)
        .where(labels.c.prompt_id == _prompt_id(project, name))
        .order_by(labels.c.name)
    )
    return list((await session.execute(query)).all())


async def label_history(session: AsyncSession, project: str, name: str, label: str) -> list[Row]:
    query = (
        select(label_moves)
        .where(label_moves.c.prompt_id == _prompt_id(project, name), label_moves.c.label == label)
        .order_by(label_moves.c.id)
    )
    return list((await session.execute(query)).all())


async def test_cases_of(session: AsyncSession, project: str, name: str) -> list[Row]:
    query = select(test_cases).where(test_cases.c.prompt_id == _prompt_id(project, name)).order_by(test_cases.c.name)
    return list((await session.execute(query)).all())
