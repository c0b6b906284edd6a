"""Inference records, off the response path: a request hands its record to a bounded local buffer and returns; a
background task turns records into ``inference.completed``/``inference.failed`` CloudEvents (text redacted with the
platform's PII rules, or only hashed) and publishes them straight to Kafka with an idempotent, batching producer.

A slow or absent Kafka never slows or fails a request: records wait in the buffer (those of a failed send go back
to its front and are sent again, the same event ids), and what does not fit is dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer

from llmops.bus.broker import client_options, pace_metadata_updates
from llmops.logging import get_logger
from llmops.settings import KafkaSettings
from llmops_schemas import CloudEvent, new_event
from llmops_schemas.events.inference import MAX_RECORD_TEXT, InferenceCompleted, InferenceFailed

log = get_logger(__name__)

SOURCE = "/llmops/deployment/gateway"
BATCH = 1000
#: How long the producer waits on a broker's answer to a send.
REQUEST_TIMEOUT_MS = 15_000
#: Seconds the drain task waits after a wake for more records (the producer lingers 20 ms as well).
LINGER = 0.02
#: Sends failing this long get a new producer: after a broker restart, aiokafka's producer was seen (make chaos) to
#: keep failing "Unable connect to node with id 1" for good while every other client of the broker had recovered.
RECONNECT_AFTER_SECONDS = 10.0


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Records:
    """The buffer, its drain task and its counters (read by ``/metrics``)."""

    def __init__(self, kafka: KafkaSettings, *, capacity: int, text_mode: str) -> None:
        self.kafka, self.capacity, self.text_mode = kafka, capacity, text_mode
        self.buffer: deque[Any] = deque()
        self.in_flight = 0
        self.dropped = 0
        self.published = 0
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task | None = None
        self._redactor = None
        self._last_drop_log = 0.0

    @property
    def buffered(self) -> int:
        return len(self.buffer) + self.in_flight

    def submit(self, record: Any) -> None:
        """Keep a record for Kafka: a ``("completed"|"failed", fields)`` pair, or a ready CloudEvent. Never waits."""
        if self.buffered >= self.capacity:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 1:  # one line a second, with the running count: logged, never silent
                self._last_drop_log = now
                log.warning("gateway.records.dropped", dropped=self.dropped, buffered=self.buffered)
            return
        self.buffer.append(record)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway-records")

    async def stop(self, *, drain_seconds: float = 5) -> None:
        """Publish what is buffered (for up to ``drain_seconds``), then stop."""
        deadline = time.monotonic() + drain_seconds
        # A poll, once, at shutdown: the drain task has no event for "buffer empty" on its hot path.
        while self.buffered and time.monotonic() < deadline and self._producer is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        if self.buffered:
            log.warning("gateway.records.unpublished", count=self.buffered)

    async def _connect(self) -> AIOKafkaProducer:
        delay = 0.2
        while True:
            producer = AIOKafkaProducer(
                **client_options(self.kafka, client_id="deployment-gateway"),
                enable_idempotence=True,
                acks="all",
                linger_ms=20,
                max_batch_size=256 * 1024,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
            )
            pace_metadata_updates(producer)
            try:
                await producer.start()
                return producer
            except Exception as exc:
                await producer.stop()
                log.warning("gateway.records.kafka_unavailable", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def _run(self) -> None:
        from llmops.pii import PiiRedactor

        if self.text_mode == "redacted":
            self._redactor = await asyncio.to_thread(PiiRedactor)
        self._producer = await self._connect()
        failing_since: float | None = None
        while True:
            if not self.buffer:
                self._wake.clear()
                await self._wake.wait()
                if len(self.buffer) < BATCH:
                    # Let records gather: building events (about 0.2 ms of the loop's CPU each, validation,
                    # redaction, send) then runs once per batch, not between every request and the next.
                    await asyncio.sleep(LINGER)
            batch = [self.buffer.popleft() for _ in range(min(BATCH, len(self.buffer)))]
            self.in_flight = len(batch)
            events = [record if isinstance(record, CloudEvent) else self._event(record) for record in batch]
            failed = await self._send([e for e in events if e is not None])
            self.in_flight = 0
            if not failed:
                failing_since = None
                continue
            self.buffer.extendleft(reversed(failed))
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > RECONNECT_AFTER_SECONDS:
                await self._reconnect(time.monotonic() - failing_since)
                failing_since = None
            await asyncio.sleep(0.5)

    async def _reconnect(self, failing_for: float) -> None:
        """A new producer in place of one whose sends keep failing (the records stay buffered meanwhile)."""
        log.warning("gateway.records.reconnecting", failing_for=round(failing_for, 1), buffered=self.buffered)
        old, self._producer = self._producer, None
        try:
            await asyncio.wait_for(old.stop(), 5)
        except Exception as exc:  # a stuck producer: dropped as it is, its records are in the buffer
            log.warning("gateway.records.producer_not_stopped", error=repr(exc))
        self._producer = await self._connect()

    async def _send(self, events: list[CloudEvent]) -> list[CloudEvent]:
        """Send a batch; returns the events whose send failed (to send again)."""
        sends = []
        for event in events:
            try:
                sends.append(await self._producer.send(_topic(event), event.to_bytes(), key=event.subject.encode()))
            except Exception:
                sends.append(None)
        results = await asyncio.gather(*(s for s in sends if s is not None), return_exceptions=True)
        outcome = iter(results)
        failed = []
        for event, sent in zip(events, sends, strict=True):
            if sent is None or isinstance(next(outcome), BaseException):
                failed.append(event)
        self.published += len(events) - len(failed)
        if failed:
            log.warning("gateway.records.send_failed", count=len(failed))
        return failed

    def _event(self, record: tuple[str, dict]) -> CloudEvent | None:
        kind, fields = record
        traceparent = fields.pop("traceparent", None)
        try:
            texts = self._texts(fields.pop("input_text", None), "input")
            fields.update(texts)
            if kind == "completed":
                fields.update(self._texts(fields.pop("output_text", None), "output"))
                payload = InferenceCompleted(**fields)
            else:
                fields.pop("output_text", None)
                payload = InferenceFailed(**fields)
        except Exception:
            self.dropped += 1
            log.exception("gateway.records.invalid", request_id=fields.get("request_id"))
            return None
        return new_event(
            payload,
            subject=payload.request_id,
            source=SOURCE,
            project=payload.project,
            actor=payload.key_id or payload.user,
            correlation_id=payload.request_id,
            traceparent=traceparent,
        )

    def _texts(self, text: str | None, name: str) -> dict[str, Any]:
        if text is None:
            return {}
        if self.text_mode == "hashed":
            return {f"{name}_sha256": sha256(text), "text_mode": "hashed"}
        redacted, _ = self._redactor.redact(text)
        return {name: redacted[:MAX_RECORD_TEXT], f"{name}_sha256": sha256(text), "text_mode": "redacted"}


def _topic(event: CloudEvent) -> str:
    from llmops_schemas.envelope import PAYLOADS

    return PAYLOADS[event.type].topic
