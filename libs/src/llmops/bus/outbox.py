"""The transactional outbox: an event is stored in the same transaction as the state change it describes, and a
relay publishes stored events to Kafka with an idempotent producer, marking them sent after Kafka acknowledged them.

A crash anywhere loses nothing: an event not yet marked sent is published again (consumers' inboxes absorb the
duplicate). ``FOR UPDATE SKIP LOCKED`` lets several relays share one outbox; per-subject order is guaranteed while
one relay runs (several relays may interleave their batches).

No poison pill: an event the broker can never take (too large, invalid) is refused by :func:`add_to_outbox` where it
is created; a row that still cannot be sent is **parked** (``parked_at``, ``park_reason``, a metric and an error log
line) and the events after it flow on. An outage (Kafka or Postgres unreachable) only pauses the relay, with capped
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from aiokafka.partitioner import murmur2
from prometheus_client import Counter as MetricCounter
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus.faults import is_transient
from llmops.bus.tables import outbox
from llmops.db import Database
from llmops.logging import get_logger
from llmops.settings import KafkaSettings
from llmops.tracing import stamp
from llmops_schemas import CLOUDEVENTS_CONTENT_TYPE, PAYLOADS, CloudEvent

log = get_logger(__name__)

PUBLISHED = MetricCounter("llmops_outbox_published_events", "Events published from the outbox to Kafka", ["topic"])
PARKED = MetricCounter(
    "llmops_outbox_parked_events", "Outbox rows the relay can never send, parked for an operator", ["topic", "error"]
)

#: Errors about one record that no retry can mend: the row is parked instead of blocking the ones after it.
UNSENDABLE = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidTopicError, CorruptRecordException)


def topic_of(event: CloudEvent) -> str:
    """The topic an event goes to: its payload's registered topic."""
    model = PAYLOADS.get(event.type)
    if model is None:
        raise ValueError(f"event type {event.type!r} has no registered payload, so no topic")
    return model.topic


class EventTooLarge(ValueError):
    """An event whose JSON is larger than the broker takes: refused where it is created, never stored.

    The HTTP edge answers it with 413 naming the limit; ``limit`` and ``size`` are in bytes.
    """

    def __init__(self, event_type: str, size: int, limit: int) -> None:
        super().__init__(
            f"the {event_type} event would be {size} bytes, over the limit of {limit} bytes an event may have "
            "(LLMOPS_KAFKA_MAX_EVENT_BYTES); shorten the largest field"
        )
        self.event_type, self.size, self.limit = event_type, size, limit


@functools.cache
def max_event_bytes() -> int:
    """The largest event the outbox stores (``KafkaSettings.max_event_bytes``), read once per process."""
    return KafkaSettings().max_event_bytes


async def add_to_outbox(session: AsyncSession, *events: CloudEvent, topic: str | None = None) -> None:
    """Store ``events`` in the outbox inside the caller's transaction; they are published after it commits.

    Each goes to its payload's registered topic unless ``topic`` is given. Raises :class:`EventTooLarge` for an
    event the broker would refuse, so no row that can never be sent is stored.
    """
    if events:
        events = stamp(events)  # written inside a traced request or handler: the trace goes on with them
        payloads = [e.to_bytes() for e in events]
        limit = max_event_bytes()
        for event, payload in zip(events, payloads, strict=True):
            if len(payload) > limit:
                raise EventTooLarge(event.type, len(payload), limit)
        await session.execute(
            _OUTBOX_INSERT,
            {
                "event_ids": [e.id for e in events],
                "topics": [topic or topic_of(e) for e in events],
                "keys": [e.subject for e in events],
                "payloads": payloads,
            },
        )


# One statement per call, whatever the number of events: arrays are unnested server-side.
_OUTBOX_INSERT = text(
    "INSERT INTO outbox (event_id, topic, key, payload) SELECT * FROM unnest("
    "CAST(:event_ids AS uuid[]), CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:payloads AS bytea[]))"
)
_HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
_MARK_SENT = text("UPDATE outbox SET published_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))")
_PARK = text("UPDATE outbox SET parked_at = now(), park_reason = :reason WHERE id = :id")


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    """Kafka's default partitioner hash (murmur2, as the Java client): the relay picks the partition itself, so
    a subject's events land where any other Kafka producer would put them, without hashing a key twice."""
    return murmur2(key) & 0x7FFFFFFF


class OutboxRelay:
    """Publishes unsent outbox rows in id order, in batches, and marks them sent once Kafka has them (acks=all)."""

    def __init__(
        self,
        db: Database,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff_seconds = max_backoff_seconds
        self._stopping = asyncio.Event()

    async def publish_batch(self) -> int:
        """Publish at most one batch; returns how many rows it settled (published or parked).

        Rows sent are marked sent, rows Kafka can never take are parked; when any other error stops a row, the
        batch's successes are still marked and the error is raised (the rest is tried again)."""
        async with self.db.transaction() as session:
            rows: Sequence = (
                await session.execute(
                    select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload)
                    .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            # Send the whole batch before waiting, so the producer can batch it; then wait for every ack.
            partitions = {t: sorted(await self.producer.partitions_for(t)) for t in {r.topic for r in rows}}
            pending = []
            for row in rows:
                key = row.key.encode()
                of_topic = partitions[row.topic]
                partition = of_topic[_key_hash(key) % len(of_topic)]
                try:
                    pending.append(
                        await self.producer.send(row.topic, row.payload, key=key, partition=partition, headers=_HEADERS)
                    )
                except UNSENDABLE as exc:  # the producer's own checks (its max_request_size) refuse it at once
                    pending.append(_failed(exc))
            outcomes = await asyncio.gather(*pending, return_exceptions=True)
            sent = [r for r, o in zip(rows, outcomes, strict=True) if not isinstance(o, BaseException)]
            unsendable = [(r, o) for r, o in zip(rows, outcomes, strict=True) if isinstance(o, UNSENDABLE)]
            await self._mark_sent(session, [r.id for r in sent])
            for row, error in unsendable:
                await self._park(session, row, error)
        for topic, count in Counter(r.topic for r in sent).items():
            PUBLISHED.labels(topic).inc(count)
        failed = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, UNSENDABLE)]
        if failed:
            raise failed[0]
        return len(rows)

    async def _mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        if ids:
            await session.execute(_MARK_SENT, {"ids": ids})

    async def _park(self, session: AsyncSession, row, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:2000]
        await session.execute(_PARK, {"id": row.id, "reason": reason})
        PARKED.labels(row.topic, type(error).__name__).inc()
        log.error(
            "outbox.relay.parked",
            outbox_id=row.id,
            topic=row.topic,
            key=row.key,
            size=len(row.payload),
            reason=reason,
            hint="the row stays in the outbox with parked_at and park_reason; later events are published",
        )

    async def run(self) -> None:
        """Relay until :meth:`stop`. A failed batch is retried: after the poll interval, or with capped exponential
        backoff while the failures are an outage (Kafka or Postgres unreachable), logged once a retry."""
        log.info("outbox.relay.started", batch_size=self.batch_size)
        failures = 0
        while not self._stopping.is_set():
            delay = self.poll_interval
            try:
                published = await self.publish_batch()
                if failures:
                    log.info("outbox.relay.resumed", retries=failures)
                failures = 0
            except Exception as exc:
                failures += 1
                published = 0
                if is_transient(exc):
                    delay = min(self.max_backoff_seconds, self.poll_interval * 2 ** min(failures - 1, 16))
                    log.warning("outbox.relay.paused", retries=failures, retry_in=delay, error=repr(exc))
                else:
                    log.exception("outbox.relay.batch_failed", retries=failures)
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        log.info("outbox.relay.stopped")

    def stop(self) -> None:
        self._stopping.set()


def _failed(error: BaseException) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


async def purge_published(db: Database, *, older_than_seconds: float = 7 * 24 * 3600) -> int:
    """Delete rows published more than ``older_than_seconds`` ago; returns how many."""
    async with db.transaction() as session:
        result = await session.execute(
            outbox.delete().where(
                outbox.c.published_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
            )
        )
    return result.rowcount or 0
