"""What a service process holds for its lifetime (:class:`Runtime`: settings, database, broker, object store, outbox
relay) and who acts in it (:class:`Actor`). No web framework here: the service layer takes these as plain arguments,
and the HTTP edge (:mod:`llmops.http`) builds them from a request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from sqlalchemy import text

from llmops.bus.broker import make_producer
from llmops.bus.consumer import Consumer
from llmops.bus.faults import is_transient
from llmops.bus.outbox import OutboxRelay, add_to_outbox, purge_published
from llmops.db import Database
from llmops.denials import AnonymousDenials
from llmops.errors import Problem
from llmops.logging import get_logger
from llmops.settings import ServiceSettings
from llmops.storage import ObjectStore
from llmops_schemas import CloudEvent, EventPayload, new_event
from llmops_schemas.events import AccessDenied

log = get_logger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acts, for events: the principal's subject and the request's correlation id."""

    subject: str
    correlation_id: str | None = None


@dataclass
class Runtime:
    """What a service process holds for its lifetime: settings, database, broker, object store, relay."""

    settings: ServiceSettings
    db: Database
    broker: KafkaBroker
    store: ObjectStore | None = None
    run_relay: bool = True
    relay: OutboxRelay | None = field(default=None, init=False)
    anonymous_denials: AnonymousDenials = field(init=False)
    _producer: AIOKafkaProducer | None = field(default=None, init=False)
    _tasks: list[asyncio.Task] = field(default_factory=list, init=False)
    _background: list[asyncio.Task] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.anonymous_denials = AnonymousDenials(
            self._record_denial_event, window_seconds=self.settings.denial_window_seconds
        )

    @property
    def source(self) -> str:
        return f"/llmops/{self.settings.service}"

    async def start(self) -> None:
        await self.when_reachable("kafka", self.broker.start)
        if self.store is not None:
            await self.when_reachable("object store", self.store.ensure_bucket)
        if self.run_relay:
            await self.when_reachable("kafka", self._start_producer)
            self.relay = OutboxRelay(
                self.db,
                self._producer,
                batch_size=self.settings.outbox_batch_size,
                poll_interval=self.settings.outbox_poll_interval,
            )
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
            self.spawn(self._purge_outbox(), name="outbox-purge")
        self.spawn(self.anonymous_denials.run(), name="anonymous-denials")

    async def _start_producer(self) -> None:
        producer = make_producer(self.settings.kafka, client_id=f"{self.settings.service}-outbox")
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def when_reachable(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a start-up ``step``, waiting out an outage of what it needs (``is_transient``: Kafka's broker or the
        object store restarting) for up to ``startup_wait_seconds``, with a log line at each try; then, or for any
        other error, raise. A process started while a dependency is away starts once it is back, rather than exit."""
        deadline = time.monotonic() + self.settings.startup_wait_seconds
        delay = 0.5
        while True:
            try:
                return await step()
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("runtime.waiting_for", dependency=what, error=repr(exc)[:300], retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _purge_outbox(self) -> None:
        while True:
            try:
                purged = await purge_published(self.db, older_than_seconds=self.settings.outbox_retention_seconds)
                if purged:
                    log.info("outbox.purged", rows=purged)
            except Exception:
                log.exception("outbox.purge_failed")
            await asyncio.sleep(3600)

    def spawn(self, coroutine, *, name: str) -> asyncio.Task:
        """Run a background loop for the service's lifetime; it is cancelled on stop."""
        task = asyncio.create_task(coroutine, name=name)
        self._background.append(task)
        return task

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self.anonymous_denials.flush()  # the last window's counts, while the relay still runs
        except Exception:
            log.exception("auth.denials.flush_failed")
        if self.relay is not None:
            self.relay.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        await self.broker.stop()
        await self.db.dispose()

    def event(self, payload: EventPayload, *, subject: str, actor: Actor, project: str) -> CloudEvent:
        """A new event of this service, caused by ``actor`` in ``project``."""
        return new_event(
            payload,
            subject=subject,
            source=self.source,
            actor=actor.subject,
            project=project,
            correlation_id=actor.correlation_id,
        )

    async def record_denial(self, denial: AccessDenied, subject: str, correlation_id: str | None = None) -> None:
        """Write a denial to the outbox in a transaction of its own (the refused request's work is rolled back).
        Anonymous 401s are only counted, per source, and recorded once a window with the count."""
        log.info("auth.denied", status=denial.status, reason=denial.reason, path=denial.path, principal=subject)
        if denial.status == 401 and subject == "anonymous":
            self.anonymous_denials.add(denial, correlation_id)
            return
        await self._record_denial_event(denial, subject, correlation_id)

    async def _record_denial_event(self, denial: AccessDenied, subject: str, correlation_id: str | None) -> None:
        event = new_event(
            denial, subject=subject, source=self.source, correlation_id=correlation_id or denial.request_id
        )
        async with self.db.transaction() as session:
            await add_to_outbox(session, event)

    async def readiness(self) -> dict[str, str]:
        """Check Postgres, Kafka and the object store; each maps to "ok" or the error."""

        async def check(probe: Callable[[], Awaitable[object]]) -> str:
            try:
                await asyncio.wait_for(probe(), 3)
                return "ok"
            except Exception as exc:
                return f"error: {exc!r}"[:300]

        async def postgres() -> None:
            async with self.db.sessions() as session:
                await session.execute(text("SELECT 1"))

        async def kafka() -> None:
            if not await self.broker.ping(timeout=2):
                raise ConnectionError("Kafka did not answer")

        checks = {"postgres": check(postgres), "kafka": check(kafka)}
        if self.store is not None:
            checks["object_store"] = check(self.store.ping)
        results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
        # A consumer waiting out an outage is not ready either, even once a probe above passes again.
        for consumer in Consumer.attached_to(self.broker):
            results[f"consumer:{consumer.name}"] = consumer.readiness()
        return results


async def spool(
    chunks: AsyncIterator[bytes], destination: Path, *, limit: int, written: Callable[[bytes], None] | None = None
) -> int:
    """Write a request body to disk as it arrives; refuse (413) as soon as it passes ``limit`` bytes. ``written`` is
    told of each chunk once it is in the file (for work that starts before the upload ends)."""
    size = 0
    with destination.open("wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise Problem(413, f"the upload is larger than the limit of {limit} bytes")
            out.write(chunk)
            if written is not None:
                out.flush()
                written(chunk)
    return size
