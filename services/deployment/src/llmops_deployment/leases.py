"""A worker's hold on a replica: the lease in the replicas table, renewed every third of it while the replica is
served, which also tells the worker when its deployment is being stopped.

A renewal that fails (Postgres unreachable for a moment) is retried with backoff until the lease would expire. The
lease is lost when another worker holds the replica or no renewal succeeded in time: the backend is killed at once and
nothing more of the replica is written, since every write first checks, under the replica row's lock, that this
worker still holds a live lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Row

from llmops.db import Database
from llmops.logging import get_logger
from llmops_deployment import repository
from llmops_schemas.events.deployments import ExternalEndpoint, ServedModel

log = get_logger(__name__)

#: The first pause before a failed renewal is tried again (doubling up to a third of the lease).
RETRY_FIRST_SECONDS = 0.1


@dataclass(frozen=True)
class Claim:
    """A replica this worker claimed, with what its deployment asks for."""

    deployment_id: str
    replica: int
    attempt: int
    project: str
    backend: str
    pool: str
    status: str  # the deployment's
    model: ServedModel | None
    external: ExternalEndpoint | None
    model_version_id: str | None
    correlation_id: str | None = None
    traceparent: str | None = None

    @classmethod
    def of(cls, row: Row) -> Claim:
        return cls(
            deployment_id=str(row.deployment_id),
            replica=row.replica,
            attempt=row.attempt,
            project=row.d_project,
            backend=row.d_backend,
            pool=row.d_pool,
            status=row.d_status,
            model=None if row.d_model is None else ServedModel.model_validate(row.d_model),
            external=None if row.d_external is None else ExternalEndpoint.model_validate(row.d_external),
            model_version_id=row.d_model_version_id,
            correlation_id=row.d_correlation_id,
            traceparent=row.d_traceparent,
        )


class Lease:
    """This worker's lease on one replica, taken at ``since`` (``time.monotonic()`` when the claim began).
    :meth:`hold` renews it every third of ``seconds`` (or at once when :attr:`check_now` is set), tells
    ``on_renewed`` each renewed row (with the deployment's status as ``d_status``) and returns once it is lost."""

    def __init__(
        self,
        db: Database,
        deployment_id: str,
        replica: int,
        worker: str,
        seconds: float,
        on_renewed: Callable[[Row], None],
        *,
        since: float,
    ) -> None:
        self.db, self.deployment_id, self.replica, self.worker = db, deployment_id, replica, worker
        self.seconds, self.on_renewed = seconds, on_renewed
        self.expires = since + seconds  # by our clock, never later than by the database's
        self.check_now = asyncio.Event()

    async def hold(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.seconds / 3):
                    await self.check_now.wait()
            except TimeoutError:
                pass
            self.check_now.clear()
            row = await self._renew()
            if row is None:
                return
            self.on_renewed(row)

    async def _renew(self) -> Row | None:
        delay, attempt = RETRY_FIRST_SECONDS, 0
        while (left := self.expires - time.monotonic()) > 0:
            attempt += 1
            asked = time.monotonic()
            try:
                async with asyncio.timeout(left):  # a renewal that hangs must not outlast the lease
                    async with self.db.transaction() as session:
                        row = await repository.renew_replica_lease(
                            session, self.deployment_id, self.replica, self.worker, self.seconds
                        )
            except Exception as exc:
                log.warning("deployment.lease.renewal_failed", deployment_id=self.deployment_id, error=repr(exc))
                await asyncio.sleep(max(0.0, min(delay, self.expires - time.monotonic())))
                delay = min(delay * 2, self.seconds / 3)
                continue
            if row is None:
                log.warning("deployment.lease.taken", deployment_id=self.deployment_id, replica=self.replica)
                return None
            self.expires = asked + self.seconds
            return row
        log.warning("deployment.lease.expired", deployment_id=self.deployment_id, replica=self.replica)
        return None
