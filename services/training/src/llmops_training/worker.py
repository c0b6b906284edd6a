"""The training worker: takes ``training.job.requested`` events of its pool from Kafka and runs them.

One consumer group per pool (``training-worker-<pool>``); several workers per pool share its partitions. A job's
offset is committed only when the job has ended, so a job whose worker dies is delivered again, to another worker or
the restarted one. Running one job (claim under a lease, train, register) is :mod:`llmops_training.job_runner`'s.

While a job runs, the worker's partitions are paused and it keeps polling, so Kafka does not take it for dead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from llmops import tracing
from llmops.bus import DeadLetterPublisher, make_broker, make_consumer
from llmops.bus.faults import is_transient
from llmops.db import Database
from llmops.logging import get_logger
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops_schemas import MalformedEvent, parse_envelope, parse_payload, topics
from llmops_schemas.events import TrainingJobRequested
from llmops_training.job_runner import JobRunner
from llmops_training.ml.process import start_forkserver
from llmops_training.settings import TrainingSettings

log = get_logger(__name__)


class TrainingWorker:
    """A worker of one pool. ``await worker.run()`` until :meth:`stop`."""

    def __init__(self, settings: TrainingSettings | None = None, *, name: str | None = None) -> None:
        self.settings = settings or TrainingSettings()
        self.pool = self.settings.pool
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id=f"training-worker-{self.pool}"),
            store=ObjectStore(self.settings.s3),
        )
        base = Path(self.settings.work_dir or tempfile.gettempdir()) / "llmops-training"
        self.work_root = base / "work" / self.name
        self.cache_dir = self.settings.cache_dir or base / "cache"
        self.group_id = self.settings.worker_group or f"training-worker-{self.pool}"
        self._stopping = asyncio.Event()
        self.jobs = JobRunner(self.settings, self.runtime, self.name, self.work_root, self.cache_dir, self._stopping)
        #: Set once the worker holds partitions of its pool's group (tests wait for it before requesting jobs).
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def store(self) -> ObjectStore:
        assert self.runtime.store is not None
        return self.runtime.store

    # -- the consumer loop ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.runtime.start()
        forkserver = asyncio.create_task(asyncio.to_thread(start_forkserver))  # the ML imports, once, meanwhile
        consumer = make_consumer(
            self.settings.kafka,
            client_id=f"{self.group_id}-{self.name}",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.settings.worker_offset_reset,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.settings.session_timeout_ms // 3),
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe([topics.TRAINING], listener=_StartingPoint(self, consumer))
        dead_letters = DeadLetterPublisher(self.runtime.broker, consumer=self.group_id)
        log.info("training.worker.started", worker=self.name, pool=self.pool, group=self.group_id)
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for partition, records in batch.items():
                    await self._take(consumer, partition, records, dead_letters)
        finally:
            await asyncio.gather(forkserver, return_exceptions=True)
            await consumer.stop()
            await self.runtime.stop()
            log.info("training.worker.stopped", worker=self.name)

    def stop(self) -> None:
        """Stop taking jobs; a running job stops at its next step, saves a checkpoint and is handed over (its offset
        stays uncommitted, so the worker that gets its partition next resumes it from that checkpoint)."""
        self._stopping.set()
        self.jobs.pause_all()

    async def _take(self, consumer: AIOKafkaConsumer, partition: TopicPartition, records, dead_letters) -> None:
        """Run the jobs of this pool among ``records``; everything else is passed over, committed in one go."""
        passed = None
        for record in records:
            try:
                event = parse_envelope(record.value or b"")
                request = parse_payload(event) if event.type == TrainingJobRequested.event_type else None
            except MalformedEvent as exc:
                await dead_letters.publish(record, reason=exc.reason, error=exc.detail, attempts=0)
                request = None
            if request is None or request.pool != self.pool:
                passed = record.offset + 1
                continue
            if not await self._run(consumer, partition, record, request, event):
                return  # interrupted: the partition was sought back to this job, the rest comes again
            passed = record.offset + 1
        if passed is not None:
            await self._commit(consumer, partition, passed)

    async def _run(self, consumer: AIOKafkaConsumer, partition: TopicPartition, record, request, event) -> bool:
        """Run one job in a consumer span of the trace that requested it (its events continue that trace)."""
        with tracing.consuming(event, consumer=self.group_id, topic=record.topic):
            return await self._run_job(consumer, partition, record, request, event)

    async def _run_job(self, consumer: AIOKafkaConsumer, partition: TopicPartition, record, request, event) -> bool:
        """Run one job while polling with paused partitions; commit it once it has ended (False: interrupted)."""
        consumer.pause(*consumer.assignment())
        job = asyncio.create_task(self.jobs.handle(request, event), name=f"job-{request.job_id}")
        try:
            while not job.done():
                await asyncio.wait({job}, timeout=1.0)
                await self._keep_polling(consumer)
            if not job.result():  # handed over (stopping) or lease lost: the job comes again, here or elsewhere
                consumer.seek(partition, record.offset)
                return False
        except Exception as exc:
            # Not the job's own failure (handle() reports those) but ours, e.g. the database is unreachable:
            # leave the offset uncommitted and take the job again after a pause.
            if is_transient(exc):  # an outage: the runner has said so ("training.job.interrupted"), once is enough
                log.warning(
                    "training.worker.job_waits_out_outage", job_id=request.job_id, pause=self.settings.lease_seconds
                )
            else:
                log.exception("training.worker.job_interrupted", job_id=request.job_id)
            consumer.seek(partition, record.offset)
            await asyncio.sleep(self.settings.lease_seconds)
            return False
        finally:
            consumer.resume(*consumer.assignment())
        await self._commit(consumer, partition, record.offset + 1)
        return True

    async def _keep_polling(self, consumer: AIOKafkaConsumer) -> None:
        """Poll while a job runs (Kafka's liveness), handing back anything a rebalance let through."""
        consumer.pause(*consumer.assignment())
        for partition, records in (await consumer.getmany(timeout_ms=0)).items():
            if records:
                consumer.seek(partition, records[0].offset)

    async def _commit(self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({partition: offset})
        except (CommitFailedError, KafkaError) as exc:
            # The partition went to another worker meanwhile: it will see the job ended and commit it itself.
            log.warning("training.worker.commit_failed", partition=str(partition), error=repr(exc))


class _StartingPoint(ConsumerRebalanceListener):
    """On assignment, a partition the group has never committed gets its starting position committed at once, so a
    worker that replaces this one starts there too (with ``latest``, it would otherwise start past our jobs)."""

    def __init__(self, worker: TrainingWorker, consumer: AIOKafkaConsumer) -> None:
        self.worker, self.consumer = worker, consumer

    async def on_partitions_revoked(self, revoked) -> None:
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        for partition in assigned:
            if await self.consumer.committed(partition) is None:
                await self.consumer.commit({partition: await self.consumer.position(partition)})
        if assigned:
            self.worker.ready.set()
            log.info("training.worker.ready", worker=self.worker.name, partitions=len(assigned))
