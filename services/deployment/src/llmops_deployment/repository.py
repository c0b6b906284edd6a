"""Every SQL statement of the deployment service that writes (and the reads the serving worker needs under locks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops_deployment.models import deployment_logs, deployment_replicas

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
        " d.model AS d_model, d.external AS d_external, d.status AS d_status, d.model_version_id AS d_model_version_id"
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
