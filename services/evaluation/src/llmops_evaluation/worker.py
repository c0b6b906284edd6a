"""The evaluation worker: takes ``evaluation.run.requested`` events of its pool from Kafka and runs them, one at a
time.

One consumer group per pool (``evaluation-worker-<pool>``); several workers per pool share its partitions. A run's
offset is committed only when the run has ended, so a run whose worker dies is delivered again, to another worker or
the restarted one (which takes it over once the dead worker's lease has expired). Running one run is
:mod:`llmops_evaluation.run_runner`'s. Other events of the topic are passed over; one that cannot be read goes to
the dead-letter topic.

While a run goes on, the worker's partitions are paused and it keeps polling, so Kafka does not take it for dead.
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
from llmops_evaluation.ml.process import start_forkserver
from llmops_evaluation.run_runner import RunRunner
from llmops_evaluation.settings import EvaluationSettings
from llmops_schemas import MalformedEvent, parse_envelope, parse_payload, topics
from llmops_schemas.events import EvaluationRunRequested

log = get_logger(__name__)


class EvaluationWorker:
    """A worker of one pool. ``await worker.run()`` until :meth:`stop`."""

    def __init__(self, settings: EvaluationSettings | None = None, *, name: str | None = None) -> None:
        self.settings = settings or EvaluationSettings()
        self.pool = self.settings.pool
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id=f"evaluation-worker-{self.pool}"),
            store=ObjectStore(self.settings.s3),
        )
        base = Path(self.settings.work_dir or tempfile.gettempdir()) / "llmops-evaluation"
        self.cache_dir = self.settings.cache_dir or base / "cache"
        self.group_id = self.settings.worker_group or f"evaluation-worker-{self.pool}"
        self._stopping = asyncio.Event()
        self.runs = RunRunner(
            self.settings, self.runtime, self.name, base / "work" / self.name, self.cache_dir, self._stopping
        )
        #: Set once the worker holds partitions of its pool's group (tests wait for it before requesting runs).
        self.ready = asyncio.Event()

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
        await consumer.start()
        consumer.subscribe([topics.EVALUATIONS], listener=_StartingPoint(self, consumer))
        dead_letters = DeadLetterPublisher(self.runtime.broker, consumer=self.group_id)
        log.info("evaluation.worker.started", worker=self.name, pool=self.pool, group=self.group_id)
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for partition, records in batch.items():
                    await self._take(consumer, partition, records, dead_letters)
        finally:
            await asyncio.gather(forkserver, return_exceptions=True)
            await consumer.stop()
            await self.runtime.stop()
            log.info("evaluation.worker.stopped", worker=self.name)

    def stop(self) -> None:
        """Stop taking runs; a running run stops at its next batch and is handed back to the queue (its offset stays
        uncommitted, so the worker that gets its partition next starts it again)."""
        self._stopping.set()
        self.runs.pause_all()

    async def _take(self, consumer: AIOKafkaConsumer, partition: TopicPartition, records, dead_letters) -> None:
        """Run the runs of this pool among ``records``; everything else is passed over, committed in one go."""
        passed = None
        for record in records:
            try:
                event = parse_envelope(record.value or b"")
                request = parse_payload(event) if event.type == EvaluationRunRequested.event_type else None
            except MalformedEvent as exc:
                await dead_letters.publish(record, reason=exc.reason, error=exc.detail, attempts=0)
                request = None
            if request is None or request.pool != self.pool:
                passed = record.offset + 1
                continue
            if not await self._run(consumer, partition, record, request, event):
                return  # interrupted: the partition was sought back to this run, the rest comes again
            passed = record.offset + 1
        if passed is not None:
            await self._commit(consumer, partition, passed)

    async def _run(self, consumer: AIOKafkaConsumer, partition: TopicPartition, record, request, event) -> bool:
        """Run one run in a consumer span of the trace that requested it (its events continue that trace)."""
        with tracing.consuming(event, consumer=self.group_id, topic=record.topic):
            return await self._run_run(consumer, partition, record, request, event)

    async def _run_run(self, consumer: AIOKafkaConsumer, partition: TopicPartition, record, request, event) -> bool:
        """Run one run while polling with paused partitions; commit it once it has ended (False: interrupted)."""
        consumer.pause(*consumer.assignment())
        run = asyncio.create_task(self.runs.handle(request, event), name=f"run-{request.run_id}")
        try:
            while not run.done():
                await asyncio.wait({run}, timeout=1.0)
                await self._keep_polling(consumer)
            if not run.result():  # handed back (stopping) or lease lost: the run comes again, here or elsewhere
                consumer.seek(partition, record.offset)
                return False
        except Exception as exc:
            # Not the run's own failure (handle() reports those) but ours, e.g. the database is unreachable:
            # leave the offset uncommitted and take the run again after a pause.
            if is_transient(exc):  # an outage: the runner has said so ("evaluation.run.interrupted"), once is enough
                log.warning(
                    "evaluation.worker.run_waits_out_outage",
                    run_id=request.run_id,
                    pause=self.settings.lease_seconds,
                )
            else:
                log.exception("evaluation.worker.run_interrupted", run_id=request.run_id)
            consumer.seek(partition, record.offset)
            await asyncio.sleep(self.settings.lease_seconds)
            return False
        finally:
            consumer.resume(*consumer.assignment())
        await self._commit(consumer, partition, record.offset + 1)
        return True

    async def _keep_polling(self, consumer: AIOKafkaConsumer) -> None:
        """Poll while a run goes on (Kafka's liveness), handing back anything a rebalance let through."""
        consumer.pause(*consumer.assignment())
        for partition, records in (await consumer.getmany(timeout_ms=0)).items():
            if records:
                consumer.seek(partition, records[0].offset)

    async def _commit(self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({partition: offset})
        except (CommitFailedError, KafkaError) as exc:
            # The partition went to another worker meanwhile: it will see the run ended and commit it itself.
            log.warning("evaluation.worker.commit_failed", partition=str(partition), error=repr(exc))


class _StartingPoint(ConsumerRebalanceListener):
    """On assignment, a partition the group has never committed gets its starting position committed at once, so a
    worker that replaces this one starts there too (with ``latest``, it would otherwise start past our runs)."""

    def __init__(self, worker: EvaluationWorker, consumer: AIOKafkaConsumer) -> None:
        self.worker, self.consumer = worker, consumer

    async def on_partitions_revoked(self, revoked) -> None:
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        for partition in assigned:
            if await self.consumer.committed(partition) is None:
                await self.consumer.commit({partition: await self.consumer.position(partition)})
        if assigned:
            self.worker.ready.set()
            log.info("evaluation.worker.ready", worker=self.worker.name, partitions=len(assigned))
