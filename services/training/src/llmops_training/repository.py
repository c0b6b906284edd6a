"""The SQL of the training service's use cases and workers (what routes only read is in
:mod:`llmops_training.queries`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_training.models import (
    alias_moves,
    base_models,
    dataset_version_deprecations,
    dataset_versions,
    job_checkpoints,
    job_logs,
    job_metrics,
    jobs,
    model_aliases,
    model_versions,
    prompt_versions,
)

ACTIVE = ("queued", "running")


# -- base models -------------------------------------------------------------------------------------------------
async def insert_base_model(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(base_models).values(**values))


async def find_base_model(session: AsyncSession, project: str, name: str) -> Row | None:
    query = select(base_models).where(base_models.c.project == project, base_models.c.name == name)
    return (await session.execute(query)).one_or_none()


async def get_base_model(session: AsyncSession, base_model_id: str) -> Row | None:
    return (await session.execute(select(base_models).where(base_models.c.id == base_model_id))).one_or_none()


# -- projections of other services' events -------------------------------------------------------------------------
async def upsert_dataset_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(dataset_versions).values(**values).on_conflict_do_nothing())


async def lock_dataset_version(session: AsyncSession, version_id: str) -> None:
    """Serialise a version's projection writes until the transaction ends (its creation and its deprecation may be
    applied by two transactions at once, e.g. a dead-letter replay beside the live stream)."""
    key = f"dataset-version:{version_id}"
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


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
    """Mark the version deprecated as its tombstone says (nothing while either of them has not arrived)."""
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


async def get_dataset_version(session: AsyncSession, version_id: str) -> Row | None:
    query = select(dataset_versions).where(dataset_versions.c.version_id == version_id)
    return (await session.execute(query)).one_or_none()


async def newest_dataset_version(session: AsyncSession, project: str, dataset_id: str) -> Row | None:
    """The highest version of dataset ``dataset_id`` in ``project`` that is not deprecated."""
    query = (
        select(dataset_versions)
        .where(
            dataset_versions.c.project == project,
            dataset_versions.c.dataset_id == dataset_id,
            dataset_versions.c.deprecated.is_(False),
        )
        .order_by(dataset_versions.c.version.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


async def insert_prompt_version(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(prompt_versions).values(**values).on_conflict_do_nothing())


async def find_prompt_version(session: AsyncSession, project: str, name: str, version: int) -> Row | None:
    query = select(prompt_versions).where(
        prompt_versions.c.project == project, prompt_versions.c.name == name, prompt_versions.c.version == version
    )
    return (await session.execute(query)).one_or_none()


# -- jobs --------------------------------------------------------------------------------------------------------
async def insert_job(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(jobs).values(**values))


async def get_job(session: AsyncSession, job_id: str, *, for_update: bool = False) -> Row | None:
    query = select(jobs).where(jobs.c.id == job_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def find_job(session: AsyncSession, project: str, job_id: str) -> Row | None:
    return (await session.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.project == project))).one_or_none()


async def update_job(session: AsyncSession, job_id: str, **values: Any) -> None:
    await session.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


async def claim_job(session: AsyncSession, job_id: str, worker: str, lease_seconds: float) -> Row | None:
    """Take a queued job, or a running one whose holder's lease expired (it died); None when another worker holds
    it or it has ended."""
    query = text(
        "UPDATE jobs SET worker = :worker, lease_until = now() + make_interval(secs => :lease), "
        "attempt = attempt + 1, status = 'running', started_at = coalesce(started_at, now()) "
        "WHERE id = :id AND status IN ('queued', 'running') AND cancel_requested_by IS NULL "
        "AND (lease_until IS NULL OR lease_until < now() OR worker = :worker) RETURNING *"
    )
    return (await session.execute(query, {"id": job_id, "worker": worker, "lease": lease_seconds})).one_or_none()


#: Why a job failed for good after its starts ran out (the number of attempts is filled in by Postgres).
GAVE_UP = "gave up after %s attempts: the worker running it died each time"


async def give_up_job(session: AsyncSession, job_id: str, worker: str, max_attempts: int) -> Row | None:
    """Fail a job whose counted starts (hand-overs aside) reached ``max_attempts`` without it ending: each one's
    worker died. None while it has starts left, is held by a live worker, is being cancelled, or has ended."""
    query = text(
        "UPDATE jobs SET status = 'failed', finished_at = now(), lease_until = NULL, "
        "error = format(:reason, attempt - handovers) "
        "WHERE id = :id AND status IN ('queued', 'running') AND cancel_requested_by IS NULL "
        "AND (lease_until IS NULL OR lease_until < now() OR worker = :worker) "
        "AND attempt - handovers >= :max_attempts RETURNING *"
    )
    values = {"id": job_id, "worker": worker, "max_attempts": max_attempts, "reason": GAVE_UP}
    return (await session.execute(query, values)).one_or_none()


async def requeue_job(session: AsyncSession, job_id: str) -> None:
    """Queue a job again, unleased, as a hand-over (its next start does not count towards the attempts)."""
    await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(status="queued", worker=None, lease_until=None, handovers=jobs.c.handovers + 1)
    )


async def renew_lease(session: AsyncSession, job_id: str, worker: str, lease_seconds: float) -> Row | None:
    """Extend this worker's lease; returns the job (with ``cancel_requested_by``), or None when it lost the job."""
    query = text(
        "UPDATE jobs SET lease_until = now() + make_interval(secs => :lease) "
        "WHERE id = :id AND worker = :worker AND status = 'running' RETURNING *"
    )
    return (await session.execute(query, {"id": job_id, "worker": worker, "lease": lease_seconds})).one_or_none()


async def holds_lease(session: AsyncSession, job_id: str, worker: str) -> bool:
    """Whether ``worker`` still holds a live lease on the running job. Locks the job's row until the transaction
    ends, so no other worker takes the job over before what this one writes with it is committed."""
    query = text(
        "SELECT 1 FROM jobs WHERE id = :id AND worker = :worker AND status = 'running' AND lease_until > now() "
        "FOR UPDATE"
    )
    return (await session.execute(query, {"id": job_id, "worker": worker})).first() is not None


async def lease_expired(session: AsyncSession, job_id: str) -> bool:
    query = text("SELECT lease_until IS NULL OR lease_until < now() FROM jobs WHERE id = :id")
    return bool((await session.execute(query, {"id": job_id})).scalar_one())


async def record_metrics(session: AsyncSession, job_id: str, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = pg_insert(job_metrics).values([{"job_id": job_id, **row} for row in rows])
    # A resumed job repeats the steps after its last checkpoint: the later run's figures win.
    statement = statement.on_conflict_do_update(
        constraint="pk_job_metrics",
        set_={c: statement.excluded[c] for c in ("epoch", "loss", "learning_rate", "tokens_per_second")},
    )
    await session.execute(statement)


async def add_log(session: AsyncSession, job_id: str, level: str, message: str, worker: str | None = None) -> None:
    await session.execute(insert(job_logs).values(job_id=job_id, level=level, message=message, worker=worker))


async def add_checkpoint(session: AsyncSession, job_id: str, step: int, manifest_sha256: str, worker: str) -> None:
    statement = pg_insert(job_checkpoints).values(
        job_id=job_id, step=step, manifest_sha256=manifest_sha256, worker=worker
    )
    await session.execute(
        statement.on_conflict_do_update(
            constraint="pk_job_checkpoints", set_={"manifest_sha256": statement.excluded.manifest_sha256}
        )
    )


async def latest_checkpoint(session: AsyncSession, job_id: str) -> Row | None:
    query = (
        select(job_checkpoints)
        .where(job_checkpoints.c.job_id == job_id)
        .order_by(job_checkpoints.c.step.desc())
        .limit(1)
    )
    return (await session.execute(query)).one_or_none()


# -- model registry ----------------------------------------------------------------------------------------------
async def lock_model_name(session: AsyncSession, project: str, name: str) -> None:
    """Serialise the numbering of one model's versions until the transaction ends."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"model:{project}:{name}"})


async def next_model_version(session: AsyncSession, project: str, name: str) -> int:
    query = select(func.coalesce(func.max(model_versions.c.version), 0)).where(
        model_versions.c.project == project, model_versions.c.name == name
    )
    return int((await session.execute(query)).scalar_one()) + 1


async def insert_model_version(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a version; False when the job already registered one (a resumed job registers once)."""
    statement = pg_insert(model_versions).values(**values).on_conflict_do_nothing(index_elements=["job_id"])
    return (await session.execute(statement.returning(model_versions.c.id))).one_or_none() is not None


async def model_version_of_job(session: AsyncSession, job_id: str) -> Row | None:
    return (await session.execute(select(model_versions).where(model_versions.c.job_id == job_id))).one_or_none()


async def get_model_version(session: AsyncSession, version_id: str) -> Row | None:
    return (await session.execute(select(model_versions).where(model_versions.c.id == version_id))).one_or_none()


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


async def set_alias(session: AsyncSession, values: dict[str, Any]) -> None:
    statement = pg_insert(model_aliases).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            constraint="pk_model_aliases",
            set_={
                "version": statement.excluded.version,
                "updated_by": statement.excluded.updated_by,
                "updated_at": func.now(),
            },
        )
    )


async def add_alias_move(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(alias_moves).values(**values))
