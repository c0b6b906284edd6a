"""The serving worker: runs the model servers (backends) of its pool's deployments, a replica each, under leases.

One consumer group per pool (``deployment-worker-<pool>``). Unlike training and evaluation, a deployment never
ends by itself, so its event's offset cannot wait for it: ``deployment.requested`` is only a wake-up, committed at
once. What to serve is in the database: the worker claims replica rows of its pool (pending ones, and ones whose
holder's lease expired: a dead worker's replicas are taken over) with ``FOR UPDATE SKIP LOCKED``, on each wake-up and
every third of a lease, up to ``worker_capacity`` replicas. A sweep takes at most one replica per deployment, and
leaves a deployment this worker already serves to the other workers for a lease's length, so replicas spread over
the pool's workers when there are several and a lone worker still serves them all.

``deployment.stop.requested`` makes the worker look at the deployment's status at once (the lease renewal looks at
it anyway). Serving one replica is :mod:`llmops_deployment.replica_runner`'s. Other events of the topic are passed
over; one that cannot be read goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from llmops import tracing
from llmops.bus import DeadLetterPublisher, make_broker, make_consumer
from llmops.db import Database
from llmops.logging import get_logger
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops_deployment import repository
from llmops_deployment.leases import Claim
from llmops_deployment.replica_runner import ReplicaRunner
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas import MalformedEvent, parse_envelope, parse_payload, topics
from llmops_schemas.events.deployments import DeploymentRequested, DeploymentStopRequested

log = get_logger(__name__)

#: The events this worker reads; any other type of the topic is passed over unread.
WATCHED = (DeploymentRequested.event_type, DeploymentStopRequested.event_type)


class ServingWorker:
    """A worker of one pool. ``await worker.run()`` until :meth:`stop`."""

    def __init__(self, settings: DeploymentSettings | None = None, *, name: str | None = None) -> None:
        self.settings = settings or DeploymentSettings()
        self.pool = self.settings.pool
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id=f"deployment-worker-{self.pool}"),
            store=ObjectStore(self.settings.s3),
        )
        base = Path(self.settings.work_dir or tempfile.gettempdir()) / "llmops-deployment"
        self.cache_dir = self.settings.cache_dir or base / "cache"
        self.group_id = self.settings.worker_group or f"deployment-worker-{self.pool}"
        self.runners: dict[tuple[str, int], ReplicaRunner] = {}
        self._tasks: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        #: Set once the worker holds partitions of its pool's group (tests wait for it before requesting).
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await self.runtime.start()
        consumer = make_consumer(
            self.settings.kafka,
            client_id=f"{self.group_id}-{self.name}",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.settings.worker_offset_reset,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.settings.session_timeout_ms // 3),
        )
        await consumer.start()
        consumer.subscribe([topics.DEPLOYMENTS], listener=_StartingPoint(self, consumer))
        dead_letters = DeadLetterPublisher(self.runtime.broker, consumer=self.group_id)
        sweeper = asyncio.create_task(self._sweep(), name="replica-sweep")
        log.info("deployment.worker.started", worker=self.name, pool=self.pool, group=self.group_id)
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for partition, records in batch.items():
                    for record in records:
                        await self._take(record, dead_letters)
                    await self._commit(consumer, {partition: records[-1].offset + 1})
        finally:
            self.stop()
            sweeper.cancel()
            await asyncio.gather(sweeper, *self._tasks, return_exceptions=True)
            await consumer.stop()
            await self.runtime.stop()
            log.info("deployment.worker.stopped", worker=self.name)

    def stop(self) -> None:
        """Stop serving: every backend is stopped and its replica handed back (pending) for another worker."""
        self._stopping.set()
        for runner in self.runners.values():
            runner.hand_over()

    async def _take(self, record, dead_letters: DeadLetterPublisher) -> None:
        try:
            event = parse_envelope(record.value or b"")
            payload = parse_payload(event) if event.type in WATCHED else None
        except MalformedEvent as exc:
            await dead_letters.publish(record, reason=exc.reason, error=exc.detail, attempts=0)
            return
        if isinstance(payload, DeploymentRequested) and payload.pool == self.pool:
            self._wake.set()
        elif isinstance(payload, DeploymentStopRequested):
            for (deployment_id, _), runner in self.runners.items():
                if deployment_id == payload.deployment_id:
                    runner.check_status()

    async def _commit(self, consumer: AIOKafkaConsumer, offsets) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:  # a rebalance: the next holder reads them again (a wake-up)
            log.warning("deployment.worker.commit_failed", error=repr(exc))

    # -- claiming replicas -------------------------------------------------------------------------------------------
    async def _sweep(self) -> None:
        """Claim what the pool has to serve on each wake-up and every third of a lease."""
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self._claim()
            except Exception as exc:  # the database away for a moment: the next sweep tries again
                log.warning("deployment.worker.claim_failed", worker=self.name, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.lease_seconds / 3)

    async def _claim(self) -> None:
        free = self.settings.worker_capacity - len(self.runners)
        if free <= 0 or self._stopping.is_set():
            return
        since = time.monotonic()
        holding = sorted({deployment_id for deployment_id, _ in self.runners})
        async with self.runtime.db.transaction() as session:
            rows = await repository.claim_replicas(
                session,
                self.pool,
                self.name,
                self.settings.lease_seconds,
                free,
                holding=holding,
                running=[f"{deployment_id}:{replica}" for deployment_id, replica in self.runners],
            )
        for row in rows:
            claim = Claim.of(row)
            log.info(
                "deployment.replica.claimed",
                deployment_id=claim.deployment_id,
                replica=claim.replica,
                attempt=claim.attempt,
                worker=self.name,
            )
            runner = ReplicaRunner(self.settings, self.runtime, self.name, self.cache_dir, claim, since)
            key = (claim.deployment_id, claim.replica)
            self.runners[key] = runner
            # The replica's reports (deployment.ready, .restarted ...) continue the trace of the request that made it,
            # as children of this span, which lasts from the claim until the replica is ready (or ends).
            started = tracing.started_span(
                "serve replica",
                parent=claim.traceparent,
                **{
                    "llmops.deployment_id": claim.deployment_id,
                    "llmops.replica": claim.replica,
                    "llmops.worker": self.name,
                },
            )
            runner.on_ready = partial(tracing.end_once, started)  # ready again after a restart: ended already
            with tracing.within(started):
                task = asyncio.create_task(runner.run(), name=f"replica-{claim.deployment_id}-{claim.replica}")
            task.add_done_callback(lambda _, span=started: tracing.end_once(span))
            self._tasks.add(task)
            task.add_done_callback(lambda done, key=key: self._ended(key, done))

    def _ended(self, key: tuple[str, int], task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.runners.pop(key, None)
        self._wake.set()  # capacity freed


class _StartingPoint(ConsumerRebalanceListener):
    """On assignment, a partition the group has never committed gets its starting position committed at once, so a
    worker that replaces this one starts there too."""

    def __init__(self, worker: ServingWorker, consumer: AIOKafkaConsumer) -> None:
        self.worker, self.consumer = worker, consumer

    async def on_partitions_revoked(self, revoked) -> None:
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        for partition in assigned:
            if await self.consumer.committed(partition) is None:
                await self.consumer.commit({partition: await self.consumer.position(partition)})
        if assigned:
            self.worker.ready.set()
            log.info("deployment.worker.ready", worker=self.worker.name, partitions=len(assigned))
