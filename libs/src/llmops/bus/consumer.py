"""The idempotent consumer: at-least-once delivery from Kafka made exactly-once in effect.

Records arrive in batches (a FastStream batch subscriber, manual commit). Each event's inbox row (consumer, event id)
is written in the same transaction as the handler's effects, so a redelivered event is a no-op; offsets are
committed only after that transaction. Malformed records (not JSON, bad envelope, unknown type, bad data) go to the
dead-letter topic at once; an event whose handler keeps failing goes there after bounded retries with backoff.

An outage is not a fault of the event: when Postgres or Kafka cannot be reached (:func:`llmops.bus.faults.is_transient`)
the batch is rewound to its first record and retried with capped backoff for as long as it takes, and the consumer
reports itself not ready meanwhile; nothing is dead-lettered for it. No offset is ever committed past a record that
was neither applied nor dead-lettered: when anything else stops a batch (the dead-letter topic refusing a record, say)
it is rewound too.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pyarrow as pa
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus.dlq import DeadLetterPublisher
from llmops.bus.faults import is_transient
from llmops.db import Database
from llmops.logging import bound_context, get_logger
from llmops.tracing import consuming
from llmops_schemas import PAYLOADS, CloudEvent, EventPayload, MalformedEvent, parse_envelope, parse_payload
from llmops_schemas.topics import DEAD_LETTER

log = get_logger(__name__)

CONSUMED = Counter("llmops_consumer_events", "Events handled by consumers", ["consumer", "outcome"])
REWOUND = Counter("llmops_consumer_rewound_batches", "Batches rewound to be consumed again", ["consumer", "cause"])

# One statement for a whole batch: the ids not yet in the inbox come back, the others were applied before.
_INBOX_INSERT = text(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS uuid[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id::text"
)

Handler = Callable[[AsyncSession, CloudEvent, EventPayload], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, "Sequence[Delivery]"], Awaitable[None]]
RowsHandler = Callable[[AsyncSession, "Rows"], Awaitable[None]]


class PermanentError(Exception):
    """Raised by a handler for an event that can never succeed: it goes to the dead-letter topic without retries."""


@dataclass(frozen=True)
class Delivery:
    """One decoded record: the event, its typed payload and where it came from."""

    record: ConsumerRecord
    event: CloudEvent
    payload: EventPayload


@dataclass(frozen=True)
class Rows:
    """Decoded records as one Arrow table: ``table``'s row i is the event ``ids[i]`` of ``records[i]``."""

    records: list[ConsumerRecord]
    ids: list[str]
    table: pa.Table

    def take(self, indexes: Sequence[int]) -> Rows:
        return Rows([self.records[i] for i in indexes], [self.ids[i] for i in indexes], self.table.take(indexes))

    def __len__(self) -> int:
        return len(self.ids)


class RowsDecoder(Protocol):
    """How a columnar consumer (:meth:`Consumer.on_rows`) turns records into :class:`Rows`."""

    #: the event types it makes rows of
    event_types: frozenset[str]

    def fast(self, records: Sequence[ConsumerRecord]) -> tuple[Rows, list[ConsumerRecord]]:
        """The records it vouches for as rows, and the others: those are decoded one by one as by any consumer
        (malformed ones dead-lettered, types without a handler skipped) and given to :meth:`of`."""
        ...

    def of(self, deliveries: Sequence[Delivery]) -> Rows:
        """Rows of events decoded the usual way (their table has the columns of :meth:`fast`'s)."""
        ...


class Consumer:
    """A consumer group's handlers for event types, with inbox, retries and dead-lettering.

    Handlers: :meth:`on` for given event types, :meth:`on_any` for every registered type without its own handler,
    :meth:`on_batch` for a handler that takes all of a batch's new events at once (the audit log's appender), or
    :meth:`on_rows` for one that takes them as a table (the monitoring ingest: no Python object per event).
    Types without a handler are skipped (a topic carries many types, a service wants some).
    """

    #: Every live consumer, so a service's readiness can report the consumers on its broker.
    _live: ClassVar[weakref.WeakSet[Consumer]] = weakref.WeakSet()

    def __init__(
        self,
        name: str,
        db: Database,
        broker: KafkaBroker,
        topics: Sequence[str],
        *,
        max_attempts: int = 3,
        backoff_seconds: float = 0.2,
        max_records: int = 500,
        group_id: str | None = None,
        max_backoff_seconds: float = 5.0,
        dead_letter_topic: str | None = None,
    ) -> None:
        self.name = name
        self.group_id = group_id or name
        self.db = db
        self.broker = broker
        self.topics = tuple(topics)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_records = max_records
        self.max_backoff_seconds = max_backoff_seconds
        self.dead_letters = DeadLetterPublisher(broker, consumer=name, topic=dead_letter_topic or DEAD_LETTER)
        self._handlers: dict[str, Handler] = {}
        self._any: Handler | None = None
        self._batch: BatchHandler | None = None
        self._rows: tuple[RowsDecoder, RowsHandler] | None = None
        # Where records were dead-lettered lately: a batch rewound after some of its records went to the dead-letter
        # topic must not send them there again when it comes back.
        self._dead_lettered: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        #: Consecutive batches rewound, and what stopped the last one; (0, None) while batches go through.
        self.stalled_batches = 0
        self.stalled_by: str | None = None
        self._stalled_since: float | None = None
        Consumer._live.add(self)

    @classmethod
    def attached_to(cls, broker: KafkaBroker) -> list[Consumer]:
        """The live consumers subscribed through ``broker``."""
        return [consumer for consumer in cls._live if consumer.broker is broker]

    def readiness(self) -> str:
        """ "ok", or why the consumer is not making progress (an outage it is waiting out)."""
        if self.stalled_by is None:
            return "ok"
        waited = time.monotonic() - (self._stalled_since or time.monotonic())
        return f"error: paused {waited:.0f}s, {self.stalled_batches} retries: {self.stalled_by}"[:300]

    def on(self, *event_types: str) -> Callable[[Handler], Handler]:
        """Register a handler for ``event_types`` (each must be a registered payload type)."""

        def register(handler: Handler) -> Handler:
            for event_type in event_types:
                if event_type not in PAYLOADS:
                    raise ValueError(f"{event_type!r} is not a registered event type")
                self._handlers[event_type] = handler
            return handler

        return register

    def on_any(self, handler: Handler) -> Handler:
        """Register the handler for every event type without a handler of its own."""
        self._any = handler
        return handler

    def on_batch(self, handler: BatchHandler) -> BatchHandler:
        """Register a handler given every batch's new deliveries (any registered type), in order, in one transaction."""
        self._batch = handler
        return handler

    def on_rows(self, decoder: RowsDecoder, handler: RowsHandler) -> None:
        """Register a handler given every batch's new events as :class:`Rows` made by ``decoder``, in one transaction
        with their inbox rows (the handler's types: those ``decoder`` makes rows of; others are skipped)."""
        self._rows = (decoder, handler)

    def subscribe(
        self,
        *,
        description: str | None = None,
        auto_offset_reset: str = "earliest",
        partition_fetch_bytes: int = 1024 * 1024,
    ):
        """Attach this consumer to the broker as a FastStream batch subscriber with manual commit.

        ``partition_fetch_bytes`` is what one fetch takes of a partition (Kafka's ``max.partition.fetch.bytes``): with
        a backlog, a batch holds at most about that much of each partition, whatever ``max_records`` allows."""

        async def on_batch(message: KafkaMessage) -> None:
            records = message.raw_message
            try:
                await self.process(records if isinstance(records, tuple | list) else [records])
                await message.ack()
            except Exception as exc:
                # Nothing of this batch is committed: every partition goes back to its first record of the batch
                # (records already applied are no-ops when they come again; the inbox knows them).
                await message.nack()
                await self._back_off(exc)
                return
            self._resumed()

        return self.broker.subscriber(
            *self.topics,
            group_id=self.group_id,
            batch=True,
            max_records=self.max_records,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset=auto_offset_reset,
            max_partition_fetch_bytes=partition_fetch_bytes,
            description=description or f"{self.name}: idempotent consumer of {', '.join(self.topics)}",
            decoder=_no_decode,
        )(_raw_batch_handler(on_batch))

    async def _back_off(self, error: Exception) -> None:
        """Wait before the rewound batch comes again: exponential from ``backoff_seconds``, capped."""
        cause = "outage" if is_transient(error) else "error"
        REWOUND.labels(self.name, cause).inc()
        self.stalled_batches += 1
        self.stalled_by = repr(error)
        if self._stalled_since is None:
            self._stalled_since = time.monotonic()
        delay = min(self.max_backoff_seconds, max(self.backoff_seconds, 0.05) * 2 ** min(self.stalled_batches - 1, 16))
        (log.warning if cause == "outage" else log.error)(
            "consumer.paused",
            consumer=self.name,
            cause=cause,
            retries=self.stalled_batches,
            retry_in=delay,
            error=repr(error),
        )
        await asyncio.sleep(delay)

    def _resumed(self) -> None:
        if self.stalled_by is not None:
            log.info("consumer.resumed", consumer=self.name, retries=self.stalled_batches)
            self.stalled_batches, self.stalled_by, self._stalled_since = 0, None, None

    async def process(self, records: Iterable[ConsumerRecord]) -> None:
        """Handle one batch: decode, dead-letter the malformed, apply the rest once each.

        Raises when the batch cannot be finished (an outage, the dead-letter topic refusing a record): the caller
        must then not commit past it."""
        dead_lettered = self._dead_lettered
        if dead_lettered:
            records = [r for r in records if (r.topic, r.partition, r.offset) not in dead_lettered]
        if self._rows is not None:
            await self._process_rows(list(records))
            return
        deliveries: list[Delivery] = []
        seen: set[str] = set()
        for record in records:
            delivery = await self._decode(record)
            if delivery is None or delivery.event.id in seen:
                continue
            seen.add(delivery.event.id)
            deliveries.append(delivery)
        if deliveries:
            await self._apply_batch(
                len(deliveries),
                lambda: self._apply(deliveries),
                ((d.event.id, d.record, lambda d=d: self._apply([d])) for d in deliveries),
            )

    async def _process_rows(self, records: list[ConsumerRecord]) -> None:
        decoder, _ = self._rows  # type: ignore[misc]
        fast, rest = decoder.fast(records)
        slow = [delivery for record in rest if (delivery := await self._decode(record)) is not None]
        parts = [fast, decoder.of(slow)] if slow else [fast]
        ids = [i for part in parts for i in part.ids]
        first = {event_id: n for n, event_id in reversed(list(enumerate(ids)))}  # a batch's repeats count once
        rows = Rows(
            [r for part in parts for r in part.records],
            ids,
            pa.concat_tables([part.table for part in parts]) if slow else fast.table,
        )
        if len(first) < len(ids):
            rows = rows.take(sorted(first.values()))
        if len(rows):
            ones = (rows.take([i]) for i in range(len(rows)))
            await self._apply_batch(
                len(rows),
                lambda: self._apply_rows(rows),
                ((one.ids[0], one.records[0], lambda one=one: self._apply_rows(one)) for one in ones),
            )

    async def _apply_batch(
        self,
        size: int,
        apply: Callable[[], Awaitable[int]],
        one_by_one: Iterable[tuple[str, ConsumerRecord, Callable[[], Awaitable[int]]]],
    ) -> None:
        """Apply a batch in one transaction; if that fails for a reason other than an outage, each event on its own
        (``one_by_one``: its id, record and apply), so that one bad event is retried and dead-lettered alone."""
        try:
            applied = await apply()
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("consumer.batch_failed", consumer=self.name, size=size, error=repr(exc))
            for event_id, record, apply_one in one_by_one:
                await self._with_retries(event_id, record, apply_one)
            return
        CONSUMED.labels(self.name, "applied").inc(applied)
        CONSUMED.labels(self.name, "duplicate").inc(size - applied)

    async def _apply_rows(self, rows: Rows) -> int:
        """Apply the rows not yet in the inbox, in one transaction; returns how many were new."""
        _, handler = self._rows  # type: ignore[misc]
        async with self.db.transaction() as session:
            new_ids = await self._new_ids(session, rows.ids)
            if new_ids:
                await handler(session, rows.take([n for n, i in enumerate(rows.ids) if i in new_ids]))
        return len(new_ids)

    async def _new_ids(self, session: AsyncSession, ids: list[str]) -> set[str]:
        """Write the inbox rows of ``ids``; those not there before come back (the others were applied already)."""
        return set((await session.execute(_INBOX_INSERT, {"consumer": self.name, "ids": ids})).scalars())

    async def _decode(self, record: ConsumerRecord) -> Delivery | None:
        try:
            if record.value is None:
                raise MalformedEvent("not_json", "the record has no value")
            event = parse_envelope(record.value)
            handler = self._handler_for(event.type)
            if handler is None:
                if event.type not in PAYLOADS:
                    raise MalformedEvent("unknown_type", f"no payload is registered for {event.type!r}")
                CONSUMED.labels(self.name, "skipped").inc()
                return None
            return Delivery(record, event, parse_payload(event))
        except MalformedEvent as exc:
            CONSUMED.labels(self.name, "malformed").inc()
            await self._dead_letter(record, reason=exc.reason, error=exc.detail, attempts=0)
            return None

    def _handler_for(self, event_type: str) -> Handler | BatchHandler | None:
        if event_type not in PAYLOADS:
            return None
        if self._rows is not None:
            return self._rows[1] if event_type in self._rows[0].event_types else None
        return self._batch or self._handlers.get(event_type) or self._any

    async def _apply(self, deliveries: Sequence[Delivery]) -> int:
        """Apply the deliveries not yet in the inbox, all in one transaction; returns how many were new."""
        async with self.db.transaction() as session:
            new_ids = await self._new_ids(session, [d.event.id for d in deliveries])
            new = [d for d in deliveries if d.event.id in new_ids]
            if self._batch is not None:
                if new:
                    await self._batch(session, new)
            else:
                for delivery in new:
                    await self._call(session, delivery)
        return len(new_ids)

    async def _call(self, session: AsyncSession, delivery: Delivery) -> None:
        event = delivery.event
        handler = self._handler_for(event.type)
        assert handler is not None  # _decode only keeps events with a handler
        with (
            bound_context(event_id=event.id, event_type=event.type, correlation_id=event.correlationid),
            consuming(event, consumer=self.name, topic=delivery.record.topic),
        ):
            await handler(session, event, delivery.payload)

    async def _with_retries(self, event_id: str, record: ConsumerRecord, apply: Callable[[], Awaitable[int]]) -> None:
        """Apply one event alone, retried; dead-lettered when it keeps failing."""
        error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                applied = await apply()
                CONSUMED.labels(self.name, "applied" if applied else "duplicate").inc()
                return
            except PermanentError as exc:
                error, attempt_count = exc, attempt
                break
            except Exception as exc:
                if is_transient(exc):
                    raise  # an outage: the whole batch waits for it to pass
                error, attempt_count = exc, attempt
                log.warning(
                    "consumer.handler_failed",
                    consumer=self.name,
                    event_id=event_id,
                    attempt=attempt,
                    error=repr(exc),
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        CONSUMED.labels(self.name, "dead_lettered").inc()
        await self._dead_letter(record, reason="handler_failed", error=repr(error), attempts=attempt_count)

    async def _dead_letter(self, record: ConsumerRecord, *, reason: str, error: str, attempts: int) -> None:
        await self.dead_letters.publish(record, reason=reason, error=error, attempts=attempts)
        self._dead_lettered[(record.topic, record.partition, record.offset)] = None
        if len(self._dead_lettered) > 10_000:
            self._dead_lettered.popitem(last=False)


async def _no_decode(message: Any) -> None:
    return None


def _raw_batch_handler(on_batch: Callable[[KafkaMessage], Awaitable[None]]):
    """A FastStream handler taking the raw batch message: decoding is ours, so bad bytes reach the DLQ."""

    async def handler(body: Any, message: KafkaMessage) -> None:
        await on_batch(message)

    return handler
