"""The SQL of the evaluation service's use cases and workers (what routes only read is in
:mod:`llmops_evaluation.queries`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_evaluation.models import (
    base_models,
    dataset_version_deprecations,
    dataset_versions,
    feedback,
    gate_decisions,
    gate_overrides,
    model_aliases,
    model_versions,
    prompt_versions,
    run_examples,
    runs,
    suite_versions,
    suites,
)


# -- projections of other services' events (any order, any number of times: each converges) -----------------------
async def upsert_dataset_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(dataset_versions).values(**values).on_conflict_do_nothing())


async def lock_dataset_version(session: AsyncSession, version_id: str) -> None:
    """Serialise a version's projection writes until the transaction ends (creation and deprecation may race)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"dataset-version:{version_id}"}
    )


async def remember_deprecation(
    session: AsyncSession, version_id: str, reason: str, deprecated_at: datetime, event_id: str
) -> None:
    """Keep a version's deprecation, the earliest of several (by event time, then id), whatever order they arrive in."""
    table = dataset_version_deprecations
    statement = pg_insert(table).values(
        version_id=version_id, reason=reason, deprecated_at=deprecated_at, event_id=event_id
    )
    excluded = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["version_id"],
            set_={"reason": excluded.reason, "deprecated_at": excluded.deprecated_at, "event_id": excluded.event_id},
            where=tuple_(excluded.deprecated_at, excluded.event_id) < tuple_(table.c.deprecated_at, table.c.event_id),
        )
    )


async def apply_deprecation(session: AsyncSession, version_id: str) -> None:
    tombstone = dataset_version_deprecations
    await session.execute(
        update(dataset_versions)
        .where(dataset_versions.c.version_id == tombstone.c.version_id, tombstone.c.version_id == version_id)
        .values(deprecated=True, deprecated_reason=tombstone.c.reason)
    )


async def find_dataset_version(session: AsyncSession, project: str, name: str, version: int) -> Row | None:
    query = select(dataset_versions).where(
        dataset_versions.c.project == project, dataset_versions.c.name == name, dataset_versions.c.version == version
    )
    return (await session.execute(query)).one_or_none()


async def insert_prompt_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(prompt_versions).values(**values).on_conflict_do_nothing())


async def find_prompt_version(session: AsyncSession, project: str, name: str, version: int) -> Row | None:
    query = select(prompt_versions).where(
        prompt_versions.c.project == project, prompt_versions.c.name == name, prompt_versions.c.version == version
    )
    return (await session.execute(query)).one_or_none()


async def insert_base_model(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(base_models).values(**values).on_conflict_do_nothing())


async def find_base_model(session: AsyncSession, project: str, name: str) -> Row | None:
    query = select(base_models).where(base_models.c.project == project, base_models.c.name == name)
    return (await session.execute(query)).one_or_none()


async def insert_model_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(model_versions).values(**values).on_conflict_do_nothing())


async def find_model_version(session: AsyncSession, project: str, name: str, version: int) -> Row | None:
    query = select(model_versions).where(
        model_versions.c.project == project, model_versions.c.name == name, model_versions.c.version == version
    )
    return (await session.execute(query)).one_or_none()


async def get_model_version(session: AsyncSession, model_version_id: str) -> Row | None:
    query = select(model_versions).where(model_versions.c.model_version_id == model_version_id)
    return (await session.execute(query)).one_or_none()


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


async def find_alias(session: AsyncSession, project: str, name: str, alias: str) -> Row | None:
    query = select(model_aliases).where(
        model_aliases.c.project == project, model_aliases.c.name == name, model_aliases.c.alias == alias
    )
    return (await session.execute(query)).one_or_none()


# -- suites ------------------------------------------------------------------------------------------------------
async def find_suite(session: AsyncSession, project: str, name: str, *, for_update: bool = False) -> Row | None:
    query = select(suites).where(suites.c.project == project, suites.c.name == name)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def insert_suite(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(suites).values(**values).on_conflict_do_nothing())


async def lock_suite_name(session: AsyncSession, project: str, name: str) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"suite:{project}/{name}"})


async def next_suite_version(session: AsyncSession, suite_id: str) -> int:
    query = select(func.coalesce(func.max(suite_versions.c.version), 0) + 1).where(
        suite_versions.c.suite_id == suite_id
    )
    return int((await session.execute(query)).scalar_one())


async def insert_suite_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(suite_versions).values(**values))


def _suite_version_query():
    return select(suite_versions, suites.c.name).join(suites, suites.c.id == suite_versions.c.suite_id)


async def get_suite_version(session: AsyncSession, version_id: str) -> Row | None:
    query = _suite_version_query().where(suite_versions.c.id == version_id)
    return (await session.execute(query)).one_or_none()


async def find_suite_version(session: AsyncSession, project: str, name: str, version: int | None) -> Row | None:
    """A suite's version ``version``, or its latest when None."""
    query = _suite_version_query().where(suites.c.project == project, suites.c.name == name)
    if version is None:
        query = query.order_by(suite_versions.c.version.desc()).limit(1)
    else:
        query = query.where(suite_versions.c.version == version)
    return (await session.execute(query)).first()


async def latest_version_of_suite(session: AsyncSession, project: str, suite_id: str) -> Row | None:
    """The latest version of the suite whose id is ``suite_id`` in ``project``."""
    query = (
        _suite_version_query()
        .where(suites.c.project == project, suites.c.id == suite_id)
        .order_by(suite_versions.c.version.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


async def latest_suite_versions_triggered_by(
    session: AsyncSession, project: str, model: str, trigger: str
) -> list[Row]:
    """The latest version of each suite of ``project`` that has ``model`` attached and ``trigger`` among its
    triggers."""
    latest = (
        select(suite_versions.c.suite_id, func.max(suite_versions.c.version).label("version"))
        .where(suite_versions.c.project == project)
        .group_by(suite_versions.c.suite_id)
        .subquery()
    )
    query = (
        _suite_version_query()
        .join(latest, (latest.c.suite_id == suite_versions.c.suite_id) & (latest.c.version == suite_versions.c.version))
        .where(suite_versions.c.models.contains([model]), suite_versions.c.triggers.contains([trigger]))
        .order_by(suites.c.name)
    )
    return list((await session.execute(query)).all())


# -- runs --------------------------------------------------------------------------------------------------------
async def insert_run(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Record a run; False when the suite version already has a run for the same trigger key (nothing written)."""
    result = await session.execute(pg_insert(runs).values(**values).on_conflict_do_nothing().returning(runs.c.id))
    return result.first() is not None


async def get_run(session: AsyncSession, run_id: str, *, for_update: bool = False) -> Row | None:
    query = select(runs).where(runs.c.id == run_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def find_run(session: AsyncSession, project: str, run_id: str) -> Row | None:
    return (await session.execute(select(runs).where(runs.c.id == run_id, runs.c.project == project))).one_or_none()


async def update_run(session: AsyncSession, run_id: str, **values: Any) -> None:
    await session.execute(update(runs).where(runs.c.id == run_id).values(**values))


async def claim_run(session: AsyncSession, run_id: str, worker: str, lease_seconds: float) -> Row | None:
    """Take a queued run, or a running one whose holder's lease expired (it died); None when another worker holds
    it or it has ended."""
    query = text(
        "UPDATE runs SET worker = :worker, lease_until = now() + make_interval(secs => :lease), "
        "attempt = attempt + 1, status = 'running', started_at = coalesce(started_at, now()) "
        "WHERE id = :id AND status IN ('queued', 'running') "
        "AND (lease_until IS NULL OR lease_until < now() OR worker = :worker) RETURNING *"
    )
    return (await session.execute(query, {"id": run_id, "worker": worker, "lease": lease_seconds})).one_or_none()


#: Why a run failed for good after its starts ran out (the number of attempts is filled in by Postgres).
GAVE_UP = "gave up after %s attempts: the worker running it died each time"


async def give_up_run(session: AsyncSession, run_id: str, worker: str, max_attempts: int) -> Row | None:
    """Fail a run whose starts reached ``max_attempts`` without it ending; None while it has starts left, is held
    by a live worker, or has ended."""
    query = text(
        "UPDATE runs SET status = 'failed', finished_at = now(), lease_until = NULL, error = format(:reason, attempt) "
        "WHERE id = :id AND status IN ('queued', 'running') "
        "AND (lease_until IS NULL OR lease_until < now() OR worker = :worker) "
        "AND attempt >= :max_attempts RETURNING *"
    )
    values = {"id": run_id, "worker": worker, "max_attempts": max_attempts, "reason": GAVE_UP}
    return (await session.execute(query, values)).one_or_none()


async def release_run(session: AsyncSession, run_id: str) -> None:
    """Queue a run again, unleased (its worker is stopping; the next one starts it afresh)."""
    await session.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(status="queued", worker=None, lease_until=None, attempt=func.greatest(runs.c.attempt - 1, 0))
    )


async def renew_lease(session: AsyncSession, run_id: str, worker: str, lease_seconds: float) -> Row | None:
    """Extend this worker's lease; returns the run, or None when it lost it."""
    query = text(
        "UPDATE runs SET lease_until = now() + make_interval(secs => :lease) "
        "WHERE id = :id AND worker = :worker AND status = 'running' RETURNING *"
    )
    return (await session.execute(query, {"id": run_id, "worker": worker, "lease": lease_seconds})).one_or_none()


async def holds_lease(session: AsyncSession, run_id: str, worker: str) -> bool:
    """Whether ``worker`` still holds a live lease on the running run; locks its row until the transaction ends."""
    query = text(
        "SELECT 1 FROM runs WHERE id = :id AND worker = :worker AND status = 'running' AND lease_until > now() "
        "FOR UPDATE"
    )
    return (await session.execute(query, {"id": run_id, "worker": worker})).first() is not None


async def insert_run_examples(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 1000):
        await session.execute(insert(run_examples), list(rows[start : start + 1000]))


async def run_examples_of(session: AsyncSession, run_id: str) -> list[Row]:
    query = select(run_examples).where(run_examples.c.run_id == run_id).order_by(run_examples.c.index)
    return list((await session.execute(query)).all())


async def latest_completed_run(
    session: AsyncSession, suite_version_id: str, project: str, model_name: str, model_version: int
) -> Row | None:
    """The latest completed run of a suite version on one model version (a relative gate's baseline)."""
    query = (
        select(runs)
        .where(
            runs.c.suite_version_id == suite_version_id,
            runs.c.project == project,
            runs.c.model_name == model_name,
            runs.c.model_version == model_version,
            runs.c.status == "completed",
        )
        .order_by(runs.c.finished_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


# -- gates -------------------------------------------------------------------------------------------------------
async def insert_decision(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(gate_decisions).values(**values))


async def find_decision(session: AsyncSession, project: str, decision_id: str) -> Row | None:
    query = select(gate_decisions).where(gate_decisions.c.id == decision_id, gate_decisions.c.project == project)
    return (await session.execute(query)).one_or_none()


async def decision_of_run(session: AsyncSession, run_id: str) -> Row | None:
    return (await session.execute(select(gate_decisions).where(gate_decisions.c.run_id == run_id))).one_or_none()


async def insert_override(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(gate_overrides).values(**values))


# -- feedback ----------------------------------------------------------------------------------------------------
async def insert_feedback(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Store one feedback; False when its id is stored already (the same event again)."""
    result = await session.execute(
        pg_insert(feedback).values(**values).on_conflict_do_nothing().returning(feedback.c.id)
    )
    return result.first() is not None


async def get_override(session: AsyncSession, override_id: str) -> Row | None:
    return (await session.execute(select(gate_overrides).where(gate_overrides.c.id == override_id))).one_or_none()
