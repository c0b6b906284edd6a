"""The records workers' supervision without processes: a worker that keeps dying is started again, each time later
(doubling up to a minute), and a failure to start one does not end the supervision."""

from __future__ import annotations

import asyncio
import itertools
import time

from llmops_monitoring.records_worker import RecordsWorkers
from llmops_monitoring.settings import MonitoringSettings


class Dead:
    returncode, stdin, stdout = 1, None, None

    def poll(self) -> int:
        return 1


async def test_a_worker_that_keeps_dying_is_restarted_ever_later():
    workers = RecordsWorkers(MonitoringSettings.model_construct(records_workers=1), restart_delay=0.05)
    workers.poll_seconds = 0.001
    spawned: list[float] = []
    refusals = 0

    def spawn():
        nonlocal refusals
        if len(spawned) == 2 and refusals == 0:
            refusals += 1
            raise OSError("no more processes")  # once: the supervision goes on
        spawned.append(time.monotonic())
        return Dead()

    workers._spawn = spawn
    workers.processes = [Dead()]
    task = asyncio.create_task(workers._supervise())
    try:
        deadline = time.monotonic() + 20
        while len(spawned) < 5:
            assert time.monotonic() < deadline, spawned
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(spawned)]
    assert refusals == 1 and workers.restarts >= 5
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert gaps[-1] > 4 * gaps[0], gaps
