"""The SQL that writes routes, API keys, project limits and budgets (what their routes only read is in
:mod:`llmops_deployment.access_queries`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_deployment.models import api_keys, budgets, project_limits, route_versions, routes


# -- routes --------------------------------------------------------------------------------------------------------
async def lock_route(session: AsyncSession, project: str, name: str) -> Row | None:
    """The route, locked until the transaction ends: concurrent changes of one route take turns, none is lost."""
    query = select(routes).where(routes.c.project == project, routes.c.name == name).with_for_update()
    return (await session.execute(query)).one_or_none()


async def create_route(
    session: AsyncSession, project: str, name: str, config: dict[str, Any], actor: str
) -> str | None:
    """Insert the route at version 1: its id (None when a concurrent request created it first: lock and change it)."""
    statement = (
        pg_insert(routes)
        .values(id=str(uuid.uuid4()), project=project, name=name, version=1, updated_by=actor, **config)
        .on_conflict_do_nothing(constraint="uq_routes_project_name")
        .returning(routes.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def update_route(session: AsyncSession, route_id: str, version: int, config: dict[str, Any], actor: str) -> None:
    await session.execute(
        update(routes)
        .where(routes.c.id == route_id)
        .values(version=version, updated_by=actor, updated_at=func.now(), **config)
    )


async def insert_route_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(route_versions).values(**values))


async def get_route_version(session: AsyncSession, route_id: str, version: int) -> Row | None:
    query = select(route_versions).where(route_versions.c.route_id == route_id, route_versions.c.version == version)
    return (await session.execute(query)).one_or_none()


# -- API keys ------------------------------------------------------------------------------------------------------
async def insert_key(session: AsyncSession, values: dict[str, Any]) -> Row:
    return (await session.execute(insert(api_keys).values(**values).returning(*api_keys.c))).one()


async def lock_key(session: AsyncSession, project: str, key_id: str) -> Row | None:
    query = select(api_keys).where(api_keys.c.project == project, api_keys.c.id == key_id).with_for_update()
    return (await session.execute(query)).one_or_none()


async def revoke_key(session: AsyncSession, key_id: str, actor: str) -> Row:
    statement = (
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(revoked_at=func.now(), revoked_by=actor)
        .returning(*api_keys.c)
    )
    return (await session.execute(statement)).one()


# -- limits and budgets --------------------------------------------------------------------------------------------
async def upsert_limits(session: AsyncSession, project: str, rpm: int | None, tpm: int | None, actor: str) -> Row:
    statement = pg_insert(project_limits).values(
        project=project, requests_per_minute=rpm, tokens_per_minute=tpm, updated_by=actor
    )
    statement = statement.on_conflict_do_update(
        index_elements=["project"],
        set_={"requests_per_minute": rpm, "tokens_per_minute": tpm, "updated_by": actor, "updated_at": func.now()},
    )
    return (await session.execute(statement.returning(*project_limits.c))).one()


async def upsert_budget(session: AsyncSession, values: dict[str, Any]) -> tuple[Row, bool]:
    """Insert or update the budget of (project, scope, subject, period); the row and whether it was created."""
    statement = pg_insert(budgets).values(id=str(uuid.uuid4()), **values)
    changed = {name: statement.excluded[name] for name in ("max_tokens", "max_cost", "updated_by")}
    statement = statement.on_conflict_do_update(
        constraint="uq_budgets_project_scope_subject_period", set_=changed | {"updated_at": func.now()}
    )
    # xmax is 0 for a row this statement inserted, the updating transaction's id otherwise.
    row = (await session.execute(statement.returning(*budgets.c, literal_column("xmax = 0").label("created")))).one()
    return row, bool(row.created)
