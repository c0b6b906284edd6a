"""A worker's hold on a running job: the lease in the jobs table, renewed while the job runs, and what the training
thread and the event loop share while it does (cancel, lost, pause).

A renewal that fails (Postgres unreachable for a moment) is retried with backoff until the lease would expire. The
lease is lost when another worker holds the job, or when no renewal succeeded in time (from then on another worker
may take the job over): ``lost`` is set, the job stops at its next step, and nothing more of it is written, since
every write of its progress first checks, under the job row's lock, that this worker still holds a live lease.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Row

from llmops.db import Database
from llmops.logging import get_logger
from llmops_training import repository

log = get_logger(__name__)

#: The first pause before a failed renewal is tried again (doubling up to a third of the lease).
RETRY_FIRST_SECONDS = 0.1


class JobLost(Exception):
    """This worker's lease on the job was taken over: stop without reporting anything."""


@dataclass(eq=False)  # compared and hashed by identity: a worker keeps its running jobs' in a set
class JobControl:
    """What the training thread and the event loop share while a job runs."""

    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)  # the worker is stopping: checkpoint, hand over
    cancelled_by: str | None = None
    metrics: deque = field(default_factory=deque)  # every step's figures, written in batches
    latest: Any = None  # the latest Progress


class Lease:
    """This worker's lease on one job, taken at ``since`` (``time.monotonic()`` when the claim began): :meth:`hold`
    renews it every third of ``seconds`` until cancelled, or until it is lost (``control.lost``)."""

    def __init__(
        self, db: Database, job_id: str, worker: str, seconds: float, control: JobControl, *, since: float
    ) -> None:
        self.db, self.job_id, self.worker, self.seconds, self.control = db, job_id, worker, seconds, control
        # by our clock, never later than by the database's: its expiry was set after ``since``
        self.expires = since + seconds

    async def hold(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            job = await self._renew()
            if job is None:
                self.control.lost.set()
                return
            if job.cancel_requested_by is not None:
                self.control.cancelled_by = job.cancel_requested_by
                self.control.cancel.set()

    async def _renew(self) -> Row | None:
        """The renewed job, trying again after failures while the lease lasts; None once it is lost."""
        delay, attempt = RETRY_FIRST_SECONDS, 0
        while (left := self.expires - time.monotonic()) > 0:
            attempt += 1
            asked = time.monotonic()
            try:
                async with asyncio.timeout(left):  # a renewal that hangs must not outlast the lease
                    async with self.db.transaction() as session:
                        job = await repository.renew_lease(session, self.job_id, self.worker, self.seconds)
            except Exception as exc:
                log.warning("training.lease.renewal_failed", job_id=self.job_id, attempt=attempt, error=repr(exc))
                await asyncio.sleep(max(0.0, min(delay, self.expires - time.monotonic())))
                delay = min(delay * 2, self.seconds / 3)
                continue
            if job is None:
                log.warning("training.lease.taken", job_id=self.job_id)
                return None
            self.expires = asked + self.seconds
            return job
        log.warning("training.lease.expired", job_id=self.job_id, attempts=attempt)
        return None
