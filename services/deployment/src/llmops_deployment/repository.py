"""The SQL of the deployment service's use cases (what routes only read is in :mod:`llmops_deployment.queries`).

Projections of other services' events arrive in any order, some more than once: every write below converges."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, literal, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_deployment.models import (
    deployment_replicas,
    deployments,
    gate_decisions,
    gate_overrides,
    inferences,
    model_aliases,
    model_versions,
    suites,
)


# -- projections of other services' events -------------------------------------------------------------------------
async def insert_model_version(session: AsyncSession, values: dict[str, Any]) -> None:
    """A model version (immutable; the first of two ids claiming one name and version stays), registered at its
    earliest announcement's time whatever order the copies arrive in."""
    await session.execute(pg_insert(model_versions).values(**values).on_conflict_do_nothing())
    await session.execute(
        update(model_versions)
        .where(
            model_versions.c.model_version_id == values["model_version_id"],
            model_versions.c.registered_at > values["registered_at"],
        )
        .values(registered_at=values["registered_at"])
    )


async def move_alias(session: AsyncSession, values: dict[str, Any]) -> None:
    """Point an alias where its latest move (by event time) says, whatever order the moves arrive in."""
    statement = pg_insert(model_aliases).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["project", "name", "alias"],
            set_={"version": statement.excluded.version, "event_time": statement.excluded.event_time},
            where=statement.excluded.event_time > model_aliases.c.event_time,
        )
    )


async def upsert_suite(session: AsyncSession, values: dict[str, Any]) -> None:
    """Keep a suite's newest version (its attached models), whatever order its versions arrive in."""
    statement = pg_insert(suites).values(**values)
    excluded = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["suite_id"],
            set_={
                "name": excluded.name,
                "version": excluded.version,
                "version_id": excluded.version_id,
                "models": excluded.models,
            },
            where=excluded.version > suites.c.version,
        )
    )


async def insert_gate_decision(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(gate_decisions).values(**values).on_conflict_do_nothing())


async def insert_gate_override(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(gate_overrides).values(**values).on_conflict_do_nothing())


async def insert_inference(session: AsyncSession, values: dict[str, Any]) -> None:
    """An inference record, once per request id (a redelivered or republished record changes nothing)."""
    await session.execute(pg_insert(inferences).values(**values).on_conflict_do_nothing())


async def find_model_version(session: AsyncSession, project: str, name: str, version: int) -> Row | None:
    query = select(model_versions).where(
        model_versions.c.project == project, model_versions.c.name == name, model_versions.c.version == version
    )
    return (await session.execute(query)).one_or_none()


async def find_alias(session: AsyncSession, project: str, name: str, alias: str) -> Row | None:
    query = select(model_aliases).where(
        model_aliases.c.project == project, model_aliases.c.name == name, model_aliases.c.alias == alias
    )
    return (await session.execute(query)).one_or_none()


async def gates_of(session: AsyncSession, project: str, model_name: str, model_version_id: str) -> list[Row]:
    """Each suite attached to ``model_name`` (its newest version), with the newest decision of that suite on the
    model version and the newest override of that decision (None where there is none), by suite name."""
    decision = (
        select(gate_decisions)
        .where(gate_decisions.c.model_version_id == model_version_id, gate_decisions.c.suite_id == suites.c.suite_id)
        .order_by(gate_decisions.c.decided_at.desc(), gate_decisions.c.decision_id.desc())
        .limit(1)
        .lateral("decision")
    )
    override = (
        select(gate_overrides)
        .where(gate_overrides.c.decision_id == decision.c.decision_id)
        .order_by(gate_overrides.c.overridden_at.desc(), gate_overrides.c.override_id.desc())
        .limit(1)
        .lateral("override")
    )
    query = (
        select(
            suites.c.suite_id,
            suites.c.name,
            suites.c.version,
            decision.c.decision_id,
            decision.c.suite_version.label("decision_suite_version"),
            decision.c.run_id,
            decision.c.passed,
            override.c.override_id,
            override.c.passed.label("override_passed"),
        )
        .select_from(suites)
        .outerjoin(decision, true())
        .outerjoin(override, true())
        .where(suites.c.project == project, suites.c.models.contains(func.jsonb_build_array(literal(model_name))))
        .order_by(suites.c.name, suites.c.suite_id)
    )
    return list((await session.execute(query)).all())


# -- deployments -------------------------------------------------------------------------------------------------
async def insert_deployment(session: AsyncSession, values: dict[str, Any]) -> None:
    """A deployment and its replica rows (pending, for the pool's workers to claim)."""
    await session.execute(insert(deployments).values(**values))
    await session.execute(
        insert(deployment_replicas),
        [{"deployment_id": values["id"], "replica": i, "status": "pending"} for i in range(values["replicas"])],
    )


async def find_deployment(
    session: AsyncSession, project: str, deployment_id: str, *, for_update: bool = False
) -> Row | None:
    query = select(deployments).where(deployments.c.id == deployment_id, deployments.c.project == project)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def mark_stopping(session: AsyncSession, deployment_id: str) -> None:
    await session.execute(
        update(deployments).where(deployments.c.id == deployment_id).values(status="stopping", updated_at=func.now())
    )
