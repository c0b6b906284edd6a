"""Dead letters read back and replayed: what consumers could not process, inspected and sent to its topic again.

A read is bounded: the dead-letter topic's end offsets are captured when the reader starts, and each partition is
read in order from its start (the beginning, the first record at a time, or past a cursor) up to that end, without a
consumer group (nothing is committed). A replay publishes a dead letter's original key, value and headers to its
original topic with an idempotent producer and waits for the acks; ``x-llmops-replay-of`` and
``x-llmops-replayed-at`` mark it. Consumers are idempotent (inbox by event id), so a double replay is harmless.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import ConsumerRecord, TopicPartition

from llmops.bus import dlq
from llmops.bus.broker import make_admin, make_consumer, make_producer
from llmops.logging import get_logger
from llmops.settings import KafkaSettings
from llmops_schemas.topics import DEAD_LETTER

log = get_logger(__name__)

#: Header naming the dead letter a replayed record came from (``<dlq partition>:<offset>``).
REPLAY_OF = "x-llmops-replay-of"
#: Header with the time of the replay (ISO 8601, UTC).
REPLAYED_AT = "x-llmops-replayed-at"

#: A dead letter's id: its partition and offset on the dead-letter topic, ``<partition>-<offset>``.
ID_PATTERN = r"^\d{1,9}-\d{1,19}$"
_ID = re.compile(ID_PATTERN)

# Seconds a read may go without progress before the reader gives up (the broker is gone or the topic is stuck).
_STALL_SECONDS = 30.0


def parse_id(letter_id: str) -> tuple[int, int]:
    """The (partition, offset) of a dead letter's id ``<partition>-<offset>``; ValueError when it is not one."""
    if _ID.fullmatch(letter_id) is None:
        raise ValueError(f"{letter_id!r} is not a dead letter id (<partition>-<offset>)")
    partition, offset = letter_id.split("-")
    return int(partition), int(offset)


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic: where it is, when it was dead-lettered, its bytes and headers."""

    partition: int
    offset: int
    time: datetime
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, record: ConsumerRecord) -> DeadLetter:
        """The dead letter a record of the dead-letter topic holds."""
        return cls(
            partition=record.partition,
            offset=record.offset,
            time=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            key=record.key,
            value=record.value or b"",
            headers={name: value.decode(errors="replace") for name, value in record.headers or ()},
        )

    @property
    def id(self) -> str:
        """``<partition>-<offset>`` on the dead-letter topic."""
        return f"{self.partition}-{self.offset}"

    @property
    def reason(self) -> str | None:
        """Why it was dead-lettered (not_json, invalid_envelope, unknown_type, invalid_data, handler_failed...)."""
        return self.headers.get(dlq.REASON)

    @property
    def error(self) -> str | None:
        """The error, as the consumer saw it (at most 4000 characters)."""
        return self.headers.get(dlq.ERROR)

    @property
    def consumer(self) -> str | None:
        """The consumer that gave up on it."""
        return self.headers.get(dlq.CONSUMER)

    @property
    def topic(self) -> str | None:
        """The topic the record was first published to, where a replay sends it."""
        return self.headers.get(dlq.ORIGINAL_TOPIC) or None

    @property
    def original_partition(self) -> int | None:
        """The partition it had on its original topic."""
        return _int(self.headers.get(dlq.ORIGINAL_PARTITION))

    @property
    def original_offset(self) -> int | None:
        """The offset it had on its original topic."""
        return _int(self.headers.get(dlq.ORIGINAL_OFFSET))

    @property
    def attempts(self) -> int | None:
        """How often the handler was tried (0 for malformed input)."""
        return _int(self.headers.get(dlq.ATTEMPTS))

    @property
    def original_headers(self) -> dict[str, str]:
        """The headers the record had on its original topic."""
        prefix = dlq.ORIGINAL_HEADER_PREFIX
        return {name[len(prefix) :]: value for name, value in self.headers.items() if name.startswith(prefix)}

    def replay_headers(self, now: datetime) -> list[tuple[str, bytes]]:
        """The original headers, with the replay's own (which dead letter, when) in place of earlier ones."""
        original = {n: v for n, v in self.original_headers.items() if n not in (REPLAY_OF, REPLAYED_AT)}
        marks = {REPLAY_OF: f"{self.partition}:{self.offset}", REPLAYED_AT: now.isoformat()}
        return [(name, value.encode()) for name, value in (original | marks).items()]


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class Selection:
    """Which dead letters: by reason, consumer, original topic and the time they were dead-lettered
    (``[from_time, to_time)``); fields left None select everything."""

    reason: str | None = None
    consumer: str | None = None
    topic: str | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` is selected."""
        return (
            (self.reason is None or letter.reason == self.reason)
            and (self.consumer is None or letter.consumer == self.consumer)
            and (self.topic is None or letter.topic == self.topic)
            and (self.from_time is None or letter.time >= self.from_time)
            and (self.to_time is None or letter.time < self.to_time)
        )


class DeadLetterReader:
    """A bounded reader of the dead-letter topic (an async context manager): what it reads ends at the end
    offsets captured on entry, so letters dead-lettered meanwhile (a failing replay's, say) are not read."""

    def __init__(
        self, settings: KafkaSettings | None = None, *, topic: str = DEAD_LETTER, client_id: str = "llmops-dlq-reader"
    ) -> None:
        self.topic = topic
        self._settings, self._client_id = settings, client_id
        self._consumer = make_consumer(
            settings, client_id=client_id, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        #: Every topic of the cluster when the reader started (where a replay can go).
        self.topics: frozenset[str] = frozenset()
        self._begins: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> DeadLetterReader:
        # The admin client's metadata names every topic with its partitions; a bare consumer's knows none of them.
        admin = make_admin(self._settings, client_id=self._client_id)
        await admin.start()
        try:
            described = await admin.describe_topics()
        finally:
            await admin.close()
        self.topics = frozenset(t["topic"] for t in described if t["error_code"] == 0)
        numbers = sorted(p["partition"] for t in described if t["topic"] == self.topic for p in t["partitions"])
        partitions = [TopicPartition(self.topic, n) for n in numbers]
        await self._consumer.start()
        try:
            if partitions:
                self._begins = await self._consumer.beginning_offsets(partitions)
                self._ends = await self._consumer.end_offsets(partitions)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._consumer.stop()

    async def scan(
        self, selection: Selection = Selection(), *, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[DeadLetter]:
        """The selected dead letters in (partition, offset) order, after the one whose id is ``after`` (a cursor),
        the first ``limit`` of them when given (reading stops there)."""
        cursor = parse_id(after) if after is not None else (-1, -1)
        starts = await self._starts(selection.from_time)
        found = 0
        for tp in sorted(self._ends, key=lambda tp: tp.partition):
            end = self._ends[tp]
            if tp.partition < cursor[0]:
                continue
            start = max(starts[tp], cursor[1] + 1) if tp.partition == cursor[0] else starts[tp]
            async for record in self._read(tp, start, end):
                letter = DeadLetter.of(record)
                if selection.matches(letter):
                    yield letter
                    found += 1
                    if limit is not None and found >= limit:
                        return

    async def get(self, letter_id: str) -> DeadLetter | None:
        """The dead letter ``letter_id``, or None when the topic does not hold it (any more)."""
        partition, offset = parse_id(letter_id)
        tp = TopicPartition(self.topic, partition)
        if tp not in self._ends or not self._begins[tp] <= offset < self._ends[tp]:
            return None
        async for record in self._read(tp, offset, offset + 1):
            return DeadLetter.of(record) if record.offset == offset else None
        return None

    async def _starts(self, from_time: datetime | None) -> dict[TopicPartition, int]:
        """Each partition's first offset to read: its beginning, or its first record at ``from_time`` or later."""
        if from_time is None or not self._ends:
            return dict(self._begins)
        found = await self._consumer.offsets_for_times({tp: int(from_time.timestamp() * 1000) for tp in self._ends})
        return {tp: self._ends[tp] if found.get(tp) is None else found[tp].offset for tp in self._ends}

    async def _read(self, tp: TopicPartition, start: int, end: int) -> AsyncIterator[ConsumerRecord]:
        if start >= end:
            return
        self._consumer.assign([tp])
        self._consumer.seek(tp, start)
        progress = time.monotonic()
        while await self._consumer.position(tp) < end:
            batch = (await self._consumer.getmany(tp, timeout_ms=1000, max_records=500)).get(tp, [])
            if batch:
                progress = time.monotonic()
            elif time.monotonic() - progress > _STALL_SECONDS:
                raise TimeoutError(f"reading {tp.topic}[{tp.partition}] made no progress for {_STALL_SECONDS:.0f}s")
            for record in batch:
                if record.offset >= end:
                    return
                yield record


@dataclass
class ReplayReport:
    """What a replay did (or, dry, would do): the ids replayed, how many to each topic, and those skipped and why."""

    dry_run: bool
    ids: list[str] = field(default_factory=list)
    topics: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, letter: DeadLetter) -> None:
        """Count ``letter`` as replayed."""
        self.ids.append(letter.id)
        self.topics[letter.topic or ""] += 1

    @property
    def count(self) -> int:
        """How many dead letters were (or, dry, would be) replayed."""
        return len(self.ids)


class ReplayFailed(Exception):
    """A replay that stopped part way (Kafka refused a record, or the read failed); ``report`` holds what Kafka
    acknowledged before that, which was replayed and must still be recorded."""

    def __init__(self, report: ReplayReport, error: BaseException) -> None:
        super().__init__(f"the replay stopped after {report.count} dead letters: {error!r}")
        self.report, self.error = report, error


async def replay(
    letters: AsyncIterator[DeadLetter] | Iterable[DeadLetter],
    *,
    existing_topics: Iterable[str],
    settings: KafkaSettings | None = None,
    dry_run: bool = False,
    client_id: str = "llmops-dlq-replay",
    batch_size: int = 500,
) -> ReplayReport:
    """Publish each dead letter's original key, value and headers to its original topic, marked as a replay, and
    wait for Kafka's acks (batch by batch); letters without an original topic, or whose topic no longer exists,
    are skipped (a send to a missing topic would wait for it until it timed out). ``dry_run`` publishes nothing.
    Raises :class:`ReplayFailed`, with what was acknowledged, when it stops part way."""
    report, existing = ReplayReport(dry_run=dry_run), frozenset(existing_topics)
    producer = None if dry_run else make_producer(settings, client_id=client_id)
    if producer is not None:
        await producer.start()
    pending: list[tuple[DeadLetter, asyncio.Future]] = []
    try:
        async for letter in _aiter(letters):
            if letter.topic is None or letter.topic not in existing:
                report.skipped[letter.id] = "no_original_topic" if letter.topic is None else "topic_missing"
            elif producer is None:
                report.add(letter)
            else:
                headers = letter.replay_headers(datetime.now(UTC))
                pending.append(
                    (letter, await producer.send(letter.topic, letter.value, key=letter.key, headers=headers))
                )
                if len(pending) >= batch_size:
                    await _acked(pending, report)
        await _acked(pending, report)
    except Exception as exc:
        # Records sent before the failure may still be acknowledged: count those too, then let the caller record them.
        await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        for letter, future in pending:
            if not future.cancelled() and future.exception() is None:
                report.add(letter)
        raise ReplayFailed(report, exc) from exc
    finally:
        if producer is not None:
            await producer.stop()
    log.info("dlq.replayed", count=report.count, topics=dict(report.topics), skipped=len(report.skipped), dry=dry_run)
    return report


async def _acked(pending: list[tuple[DeadLetter, asyncio.Future]], report: ReplayReport) -> None:
    """Wait for each record's ack in turn, counting it replayed once acknowledged."""
    while pending:
        letter, future = pending[0]
        await future
        pending.pop(0)
        report.add(letter)


async def _aiter(letters: AsyncIterator[DeadLetter] | Iterable[DeadLetter]) -> AsyncIterator[DeadLetter]:
    if hasattr(letters, "__aiter__"):
        async for letter in letters:  # type: ignore[union-attr]
            yield letter
    else:
        for letter in letters:  # type: ignore[union-attr]
            yield letter
