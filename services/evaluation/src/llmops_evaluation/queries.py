"""What the evaluation service's routes read. Every statement filters by the project, directly or through the run
it belongs to, so a read cannot cross projects whatever id it is given."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, true
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_evaluation.models import (
    feedback,
    gate_decisions,
    gate_overrides,
    run_examples,
    runs,
    suite_versions,
    suites,
)


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


async def decisions(
    session: AsyncSession,
    project: str,
    *,
    model: str | None,
    version: int | None,
    run_id: str | None,
    limit: int,
    offset: int,
) -> list[Row]:
    """Gate decisions, newest first, each with its suite's name and version and its latest override (if any)."""
    latest_override = (
        select(gate_overrides)
        .where(gate_overrides.c.decision_id == gate_decisions.c.id)
        .order_by(gate_overrides.c.created_at.desc())
        .limit(1)
        .lateral()
    )
    query = (
        select(
            gate_decisions,
            suites.c.name.label("suite"),
            suite_versions.c.version.label("suite_version"),
            latest_override.c.id.label("override_id"),
            latest_override.c.passed.label("override_passed"),
            latest_override.c.reason.label("override_reason"),
            latest_override.c.actor.label("override_actor"),
            latest_override.c.created_at.label("overridden_at"),
        )
        .join(suite_versions, suite_versions.c.id == gate_decisions.c.suite_version_id)
        .join(suites, suites.c.id == suite_versions.c.suite_id)
        .outerjoin(latest_override, true())
        .where(gate_decisions.c.project == project)
    )
    if model is not None:
        query = query.where(gate_decisions.c.model_name == model)
    if version is not None:
        query = query.where(gate_decisions.c.model_version == version)
    if run_id is not None:
        query = query.where(gate_decisions.c.run_id == run_id)
    query = query.order_by(gate_decisions.c.decided_at.desc(), gate_decisions.c.id).limit(limit).offset(offset)
    return list((await session.execute(query)).all())


async def overrides_of(session: AsyncSession, project: str, decision_id: str) -> list[Row]:
    query = (
        select(gate_overrides)
        .where(gate_overrides.c.decision_id == decision_id, gate_overrides.c.project == project)
        .order_by(gate_overrides.c.created_at)
    )
    return list((await session.execute(query)).all())


async def examples_of(session: AsyncSession, project: str, run_id: str, *, limit: int, offset: int) -> list[Row]:
    scope = select(runs.c.id).where(runs.c.id == run_id, runs.c.project == project).scalar_subquery()
    query = (
        select(run_examples)
        .where(run_examples.c.run_id == scope)
        .order_by(run_examples.c.index)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.execute(query)).all())


# -- feedback ----------------------------------------------------------------------------------------------------


async def find_feedback(session: AsyncSession, feedback_id: str) -> Row | None:
    return (await session.execute(select(feedback).where(feedback.c.id == feedback_id))).one_or_none()


async def list_feedback(
    session: AsyncSession,
    project: str,
    *,
    model_version_id: str | None,
    run_id: str | None,
    has_correction: bool | None,
    limit: int,
    offset: int,
) -> list[Row]:
    """The project's feedback, newest first."""
    query = select(feedback).where(feedback.c.project == project)
    if model_version_id is not None:
        query = query.where(feedback.c.model_version_id == model_version_id)
    if run_id is not None:
        query = query.where(feedback.c.run_id == run_id)
    if has_correction is not None:
        query = query.where(feedback.c.correction.is_not(None) if has_correction else feedback.c.correction.is_(None))
    query = query.order_by(feedback.c.submitted_at.desc(), feedback.c.id).limit(limit).offset(offset)
    return list((await session.execute(query)).all())


async def feedback_judgements(session: AsyncSession, project: str, model_version_id: str | None) -> list[Row]:
    """Each feedback's model version, rating, thumb and whether it has a correction (what a summary counts)."""
    query = select(
        feedback.c.model_version_id,
        feedback.c.rating,
        feedback.c.thumb,
        feedback.c.correction.is_not(None).label("corrected"),
    ).where(feedback.c.project == project)
    if model_version_id is not None:
        query = query.where(feedback.c.model_version_id == model_version_id)
    return list((await session.execute(query.order_by(feedback.c.model_version_id, feedback.c.id))).all())


async def corrections(
    session: AsyncSession,
    project: str,
    *,
    model_version_id: str | None,
    run_id: str | None,
    since: datetime | None,
) -> list[Row]:
    """The project's feedback carrying a correction, oldest first (what an export turns into rows)."""
    query = select(
        feedback.c.id, feedback.c.input, feedback.c.correction, feedback.c.run_id, feedback.c.example_index
    ).where(feedback.c.project == project, feedback.c.correction.is_not(None))
    if model_version_id is not None:
        query = query.where(feedback.c.model_version_id == model_version_id)
    if run_id is not None:
        query = query.where(feedback.c.run_id == run_id)
    if since is not None:
        query = query.where(feedback.c.submitted_at >= since)
    return list((await session.execute(query.order_by(feedback.c.submitted_at, feedback.c.id))).all())
