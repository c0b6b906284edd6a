"""What the routes, keys, limits and budgets routes read (their writes are in
:mod:`llmops_deployment.access_repository`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_deployment.models import (
    api_keys,
    budget_usage,
    budgets,
    deployments,
    project_limits,
    route_versions,
    routes,
)

#: An API key's columns that may be shown: never its hash.
KEY_COLUMNS = [column for column in api_keys.c if column.name != "key_hash"]


async def deployments_by_id(session: AsyncSession, project: str, ids: Iterable[str]) -> dict[str, Row]:
    """The project's deployments among ``ids`` (canonical UUIDs): id, name and status."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(deployments.c.id, deployments.c.name, deployments.c.status).where(
        deployments.c.project == project, deployments.c.id.in_(wanted)
    )
    return {row.id: row for row in (await session.execute(query)).all()}


async def find_route(session: AsyncSession, project: str, name: str) -> Row | None:
    query = select(routes).where(routes.c.project == project, routes.c.name == name)
    return (await session.execute(query)).one_or_none()


async def list_routes(session: AsyncSession, project: str, limit: int, offset: int) -> Sequence[Row]:
    query = select(routes).where(routes.c.project == project).order_by(routes.c.name).limit(limit).offset(offset)
    return (await session.execute(query)).all()


async def route_history(session: AsyncSession, route_id: str, limit: int, offset: int) -> Sequence[Row]:
    """A route's versions, newest first."""
    query = (
        select(route_versions)
        .where(route_versions.c.route_id == route_id)
        .order_by(route_versions.c.version.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.execute(query)).all()


async def list_keys(
    session: AsyncSession, project: str, *, include_revoked: bool, limit: int, offset: int
) -> Sequence[Row]:
    """The project's API keys, newest first (without their hashes)."""
    query = select(*KEY_COLUMNS).where(api_keys.c.project == project)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    query = query.order_by(api_keys.c.created_at.desc(), api_keys.c.id).limit(limit).offset(offset)
    return (await session.execute(query)).all()


async def find_key(session: AsyncSession, project: str, key_id: str) -> Row | None:
    query = select(*KEY_COLUMNS).where(api_keys.c.project == project, api_keys.c.id == key_id)
    return (await session.execute(query)).one_or_none()


async def get_limits(session: AsyncSession, project: str) -> Row | None:
    return (await session.execute(select(project_limits).where(project_limits.c.project == project))).one_or_none()


async def list_budgets(
    session: AsyncSession, project: str, windows: dict[str, datetime], *, budget_id: str | None = None
) -> Sequence[Row]:
    """The project's budgets, each with its current window (``windows`` by period) and what that window has used and
    holds reserved (0 when nothing yet)."""
    window = case(*((budgets.c.period == period, start) for period, start in windows.items()), else_=None).label(
        "window_start"
    )
    joined = budgets.outerjoin(
        budget_usage, and_(budget_usage.c.budget_id == budgets.c.id, budget_usage.c.window_start == window)
    )
    query = (
        select(
            budgets,
            window,
            func.coalesce(budget_usage.c.used_tokens, 0).label("used_tokens"),
            func.coalesce(budget_usage.c.used_cost, 0.0).label("used_cost"),
            func.coalesce(budget_usage.c.reserved_tokens, 0).label("reserved_tokens"),
            func.coalesce(budget_usage.c.reserved_cost, 0.0).label("reserved_cost"),
        )
        .select_from(joined)
        .where(budgets.c.project == project)
        .order_by(budgets.c.scope, budgets.c.subject, budgets.c.period)
    )
    if budget_id is not None:
        query = query.where(budgets.c.id == budget_id)
    return (await session.execute(query)).all()
