"""A worker's hold on a running evaluation run: the lease in the runs table, renewed while the run goes on, and what
the generation thread and the event loop share meanwhile (lost, pause, progress).

A renewal that fails (Postgres unreachable for a moment) is retried with backoff until the lease would expire. The
lease is lost when another worker holds the run or no renewal succeeded in time: ``lost`` is set, generation stops
at its next batch, and nothing more of the run is written, since every write first checks, under the run row's
lock, that this worker still holds a live lease.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from llmops.db import Database
from llmops.logging import get_logger
from llmops_evaluation import repository

log = get_logger(__name__)

#: The first pause before a failed renewal is tried again (doubling up to a third of the lease).
RETRY_FIRST_SECONDS = 0.1


class RunLost(Exception):
    """This worker's lease on the run was taken over: stop without writing anything."""


class RunHandedOver(Exception):
    """The worker is stopping: the run was queued again for the next worker."""


@dataclass(eq=False)  # compared and hashed by identity: a worker keeps its running runs' in a set
class RunControl:
    """What the generation thread and the event loop share while a run goes on."""

    lost: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)  # the worker is stopping: hand the run over
    stage: str = "generating"
    done: int = 0
    total: int = 0
    generated: int = 0  # examples with an output (or a generation error) so far
    stage_started: float = field(default_factory=time.monotonic)

    def should_stop(self) -> bool:
        return self.lost.is_set() or self.pause.is_set()

    def add(self, count: int) -> None:
        self.done += count

    def enter(self, stage: str, total: int) -> None:
        self.stage, self.done, self.total, self.stage_started = stage, 0, total, time.monotonic()


class Lease:
    """This worker's lease on one run, taken at ``since`` (``time.monotonic()`` when the claim began): :meth:`hold`
    renews it every third of ``seconds`` until cancelled, or until it is lost (``control.lost``)."""

    def __init__(
        self, db: Database, run_id: str, worker: str, seconds: float, control: RunControl, *, since: float
    ) -> None:
        self.db, self.run_id, self.worker, self.seconds, self.control = db, run_id, worker, seconds, control
        self.expires = since + seconds  # by our clock, never later than by the database's

    async def hold(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            if not await self._renew():
                self.control.lost.set()
                return

    async def _renew(self) -> bool:
        delay, attempt = RETRY_FIRST_SECONDS, 0
        while (left := self.expires - time.monotonic()) > 0:
            attempt += 1
            asked = time.monotonic()
            try:
                async with asyncio.timeout(left):  # a renewal that hangs must not outlast the lease
                    async with self.db.transaction() as session:
                        run = await repository.renew_lease(session, self.run_id, self.worker, self.seconds)
            except Exception as exc:
                log.warning("evaluation.lease.renewal_failed", run_id=self.run_id, attempt=attempt, error=repr(exc))
                await asyncio.sleep(max(0.0, min(delay, self.expires - time.monotonic())))
                delay = min(delay * 2, self.seconds / 3)
                continue
            if run is None:
                log.warning("evaluation.lease.taken", run_id=self.run_id)
                return False
            self.expires = asked + self.seconds
            return True
        log.warning("evaluation.lease.expired", run_id=self.run_id, attempts=attempt)
        return False
