"""Records workers: the records consumer (:class:`~llmops_monitoring.ingest.Ingest`) in processes of its own, so that
ingest uses the machine's other cores and never holds up the API's event loop.

Each worker is ``python -m llmops_monitoring.records_worker``, given the service's settings (pickled) on its stdin;
the workers are members of one consumer group, so Kafka shares the partitions out among them. A batch is exactly as
in the service's own process: one transaction with its inbox rows, its files published by the service's publisher
loop. A worker ends when its stdin closes (the service ended, even killed) or on SIGTERM; :class:`RecordsWorkers`
starts the workers with the service, starts again one that died, and stops them with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pickle
import signal
import subprocess
import sys
import time

from llmops.bus import make_broker
from llmops.db import Database
from llmops.logging import configure_logging, get_logger
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops_monitoring.settings import MonitoringSettings

log = get_logger(__name__)

READY = b"ready\n"


class RecordsWorkers:
    """The service's records workers: started with it, restarted when one dies (after ``restart_delay`` seconds,
    doubling while they keep dying, up to a minute), stopped with it."""

    def __init__(self, settings: MonitoringSettings, *, restart_delay: float = 1.0) -> None:
        self.settings, self.restart_delay = settings, restart_delay
        self.processes: list[subprocess.Popen | None] = [None] * settings.records_workers
        self.restarts = 0
        self.poll_seconds = 0.5  # how often the workers are looked at
        self.sleep = asyncio.sleep  # every wait of the supervision (a test records them)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        for n in range(len(self.processes)):
            self.processes[n] = self._spawn()
        self._task = asyncio.create_task(self._supervise(), name="records-workers")

    def _spawn(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmops_monitoring.records_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdin is not None
        try:
            process.stdin.write(pickle.dumps(self.settings))
            process.stdin.flush()  # kept open: its end tells the worker the service is gone
        except BrokenPipeError:
            pass  # it ended before reading them: seen dead and started again by the supervision
        return process

    async def ready(self, within: float = 120) -> None:
        """Wait until every worker has started its consumer (said ``ready``; its group may still be joining)."""
        for process in self.processes:
            assert process is not None and process.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), within)
            if line != READY:
                raise RuntimeError(f"a records worker ended before it was ready (exit {process.poll()})")

    async def _supervise(self) -> None:
        delay, last_restart = self.restart_delay, 0.0
        while True:
            await self.sleep(self.poll_seconds)
            if time.monotonic() - last_restart > 60:
                delay = self.restart_delay  # a minute without a death: the next one is restarted quickly again
            for n, process in enumerate(self.processes):
                if process is None or process.poll() is None:
                    continue
                log.error("monitoring.records_worker_died", worker=n, exit=process.returncode, restart_in=delay)
                _close_pipes(process)
                await self.sleep(delay)
                try:
                    self.processes[n] = self._spawn()
                except OSError as exc:  # no process could be started (resources): tried again after the delay
                    log.error("monitoring.records_worker_not_started", worker=n, error=repr(exc))
                    continue
                finally:
                    delay, last_restart = min(delay * 2, 60.0), time.monotonic()
                self.restarts += 1

    async def stop(self, grace: float = 30) -> None:
        """Stop the workers (SIGTERM: each finishes its batch and leaves the group); one still running after
        ``grace`` seconds is killed (its batch comes again to the others)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in self.processes:
            if process is None:
                continue
            try:
                await asyncio.to_thread(process.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
            _close_pipes(process)


def _close_pipes(process: subprocess.Popen) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


async def run(settings: MonitoringSettings) -> None:
    from llmops_monitoring.consumers import records_consumer

    store = ObjectStore(settings.s3)
    runtime = Runtime(
        settings,
        Database(settings.db_url),
        make_broker(settings.kafka, client_id="monitoring-records"),
        store=store,
        run_relay=False,  # ingest publishes no events (dead letters go straight to their topic)
    )
    records_consumer(settings, runtime)
    # A process that only ingests: what it imported stays (frozen out of the collector's passes), and the collector
    # runs every 50,000 allocations rather than 700 (a batch makes hundreds of thousands of short-lived objects;
    # with the default, collection took a third of the ingest's time).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def service_gone() -> None:  # stdin readable: the service closed its end, or ended (nothing else comes)
        if not os.read(0, 4096):
            loop.remove_reader(0)
            stop.set()

    loop.add_reader(0, service_gone)
    await runtime.start()
    log.info("monitoring.records_worker_started", group=settings.records_group)
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    os.dup2(2, 1)  # from now on nobody reads the pipe: whatever a library prints goes to stderr
    try:
        await stop.wait()
    finally:
        await runtime.stop()


def main() -> None:
    settings = pickle.load(sys.stdin.buffer)  # noqa: S301 (written by the service that started this process)
    configure_logging()
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
