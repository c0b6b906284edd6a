"""The records workers' supervision without processes: a worker that keeps dying is started again, each time later
(doubling up to a minute), and a failure to start one does not end the supervision."""

from __future__ import annotations

import asyncio
import time

from llmops_monitoring.records_worker import RecordsWorkers
from llmops_monitoring.settings import MonitoringSettings


class Dead:
    returncode, stdin, stdout = 1, None, None

    def poll(self) -> int:
        return 1


async def test_a_worker_that_keeps_dying_is_restarted_ever_later():
    """The supervision's waits are recorded (and not waited): each restart waits twice as long as the one before,
    a failed start included."""
    workers = RecordsWorkers(MonitoringSettings.model_construct(records_workers=1), restart_delay=0.05)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        if seconds != workers.poll_seconds:
            waits.append(seconds)
        await asyncio.sleep(0)

    spawned = 0
    refusals = 0

    def spawn():
        nonlocal refusals, spawned
        if spawned == 2 and refusals == 0:
            refusals += 1
            raise OSError("no more processes")  # once: the supervision goes on
        spawned += 1
        return Dead()

    workers.sleep, workers._spawn = sleep, spawn
    workers.processes = [Dead()]
    task = asyncio.create_task(workers._supervise())
    try:
        deadline = time.monotonic() + 20
        while spawned < 5:
            assert time.monotonic() < deadline, waits
            await asyncio.sleep(0)
    finally:
        task.cancel()
    assert refusals == 1 and workers.restarts >= 5
    assert waits[:6] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6], waits
