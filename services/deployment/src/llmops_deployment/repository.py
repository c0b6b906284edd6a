"""The SQL of the deployment service's use cases (what routes only read is in :mod:`llmops_deployment.queries`).

Projections of other services' events arrive in any order, some more than once: every write below converges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, literal, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_deployment.models import (
    deployment_logs,
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


# --- serving worker ---

#: Replica statuses no worker holds any more.
REPLICA_ENDED = ("failed", "stopped")


async def claim_replicas(
    session: AsyncSession,
    pool: str,
    worker: str,
    lease_seconds: float,
    limit: int,
    *,
    holding: Sequence[str] = (),
    running: Sequence[str] = (),
) -> list[Row]:
    """Take up to ``limit`` replicas of the pool's deployments: pending ones, and ones of any live status whose
    holder's lease expired (it died). At most one replica per deployment per call, and one of a deployment in
    ``holding`` (those this worker already serves) only once it has waited a lease's length for another worker, so
    a deployment's replicas spread over the pool's workers. ``running`` (``deployment_id:replica``) are the replicas
    this worker serves: never claimed again by it, even when a late renewal let their lease expire. Each comes with
    its deployment's columns (``d_*``)."""
    if limit <= 0:
        return []
    query = text(
        "WITH claimable AS ("
        " SELECT r.deployment_id, r.replica FROM deployment_replicas r JOIN deployments d ON d.id = r.deployment_id"
        " WHERE d.pool = :pool AND d.status NOT IN ('stopped', 'failed') AND r.status NOT IN ('failed', 'stopped')"
        " AND (NOT (r.deployment_id = ANY(CAST(:holding AS uuid[])))"
        "  OR r.updated_at < now() - make_interval(secs => :lease))"
        " AND ((r.status = 'pending' AND r.lease_until IS NULL) OR r.lease_until < now())"
        " AND NOT (CAST(r.deployment_id AS text) || ':' || r.replica = ANY(CAST(:running AS text[])))"
        " FOR UPDATE OF r SKIP LOCKED"
        "), taken AS ("
        " SELECT DISTINCT ON (deployment_id) deployment_id, replica FROM claimable"
        " ORDER BY deployment_id, replica LIMIT :limit"
        ") "
        "UPDATE deployment_replicas r SET worker = :worker, lease_until = now() + make_interval(secs => :lease),"
        " attempt = r.attempt + 1, status = CASE WHEN r.status IN ('stopping') THEN r.status ELSE 'starting' END,"
        " endpoint = NULL, updated_at = now() "
        "FROM taken, deployments d WHERE r.deployment_id = taken.deployment_id AND r.replica = taken.replica"
        " AND d.id = r.deployment_id "
        "RETURNING r.*, d.project AS d_project, d.name AS d_name, d.backend AS d_backend, d.pool AS d_pool,"
        " d.model AS d_model, d.external AS d_external, d.status AS d_status, d.model_version_id AS d_model_version_id,"
        " d.correlation_id AS d_correlation_id, d.traceparent AS d_traceparent"
    )
    params = {
        "pool": pool,
        "worker": worker,
        "lease": lease_seconds,
        "limit": limit,
        "holding": list(holding),
        "running": list(running),
    }
    return list((await session.execute(query, params)).all())


async def renew_replica_lease(
    session: AsyncSession, deployment_id: str, replica: int, worker: str, lease_seconds: float
) -> Row | None:
    """Extend this worker's lease on a replica; the replica with its deployment's status (``d_status``), or None
    when the worker lost it."""
    query = text(
        "UPDATE deployment_replicas r SET lease_until = now() + make_interval(secs => :lease) FROM deployments d "
        "WHERE r.deployment_id = :id AND r.replica = :replica AND r.worker = :worker AND d.id = r.deployment_id"
        " AND r.status NOT IN ('failed', 'stopped') AND r.lease_until > now() "
        "RETURNING r.*, d.status AS d_status"
    )
    params = {"id": deployment_id, "replica": replica, "worker": worker, "lease": lease_seconds}
    return (await session.execute(query, params)).one_or_none()


async def holds_replica(session: AsyncSession, deployment_id: str, replica: int, worker: str) -> bool:
    """Whether ``worker`` still holds a live lease on the replica; locks its row until the transaction ends."""
    query = text(
        "SELECT 1 FROM deployment_replicas WHERE deployment_id = :id AND replica = :replica AND worker = :worker"
        " AND status NOT IN ('failed', 'stopped') AND lease_until > now() FOR UPDATE"
    )
    params = {"id": deployment_id, "replica": replica, "worker": worker}
    return (await session.execute(query, params)).first() is not None


async def update_replica(session: AsyncSession, deployment_id: str, replica: int, **values: Any) -> None:
    await session.execute(
        update(deployment_replicas)
        .where(deployment_replicas.c.deployment_id == deployment_id, deployment_replicas.c.replica == replica)
        .values(**values, updated_at=text("now()"))
    )


async def settle_deployment_status(session: AsyncSession, deployment_id: str, *, error: str | None = None) -> str:
    """Derive the deployment's status from its replicas (locking its row): a stopping deployment is stopped once no
    replica is live; otherwise it is ready while any replica is, failed when a replica just failed (``error``) and
    none is ready. Returns the status."""
    query = text(
        "UPDATE deployments d SET status = CASE"
        " WHEN d.status IN ('stopping', 'stopped') THEN"
        "  CASE WHEN s.live = 0 THEN 'stopped' ELSE d.status END"
        " WHEN s.ready > 0 THEN 'ready'"
        " WHEN CAST(:error AS text) IS NOT NULL THEN 'failed'"
        " ELSE d.status END,"
        " last_error = COALESCE(CAST(:error AS text), d.last_error),"
        " stopped_at = CASE WHEN d.status IN ('stopping', 'stopped') AND s.live = 0"
        "  THEN COALESCE(d.stopped_at, now()) ELSE d.stopped_at END,"
        " updated_at = now() "
        "FROM (SELECT count(*) FILTER (WHERE status = 'ready') AS ready,"
        " count(*) FILTER (WHERE status NOT IN ('failed', 'stopped')) AS live"
        " FROM deployment_replicas WHERE deployment_id = :id) s "
        "WHERE d.id = :id RETURNING d.status"
    )
    return (await session.execute(query, {"id": deployment_id, "error": error})).scalar_one()


async def release_replica(session: AsyncSession, deployment_id: str, replica: int, worker: str) -> None:
    """Hand a replica back to the pool (its worker is stopping): pending, unleased, another worker starts it."""
    await session.execute(
        update(deployment_replicas)
        .where(
            deployment_replicas.c.deployment_id == deployment_id,
            deployment_replicas.c.replica == replica,
            deployment_replicas.c.worker == worker,
            deployment_replicas.c.status.not_in(REPLICA_ENDED),
        )
        .values(status="pending", worker=None, lease_until=None, endpoint=None, updated_at=text("now()"))
    )


async def append_logs(session: AsyncSession, deployment_id: str, replica: int, lines: Sequence[str], keep: int) -> None:
    """Add a replica's backend log lines and drop all but its newest ``keep``."""
    if not lines:
        return
    rows = [{"deployment_id": deployment_id, "replica": replica, "line": line} for line in lines]
    await session.execute(insert(deployment_logs), rows)
    await session.execute(
        text(
            "DELETE FROM deployment_logs WHERE deployment_id = :id AND replica = :replica AND id <= ("
            " SELECT id FROM deployment_logs WHERE deployment_id = :id AND replica = :replica"
            " ORDER BY id DESC OFFSET :keep LIMIT 1)"
        ),
        {"id": deployment_id, "replica": replica, "keep": keep},
    )
