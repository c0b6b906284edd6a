"""The HTTP app factory every service uses: health, readiness, metrics, problem details, request ids, auth wiring,
and the lifecycle of the service's broker, outbox relay and object store.

``/healthz``, ``/readyz`` and ``/metrics`` are the only routes without a bearer token: orchestrators and Prometheus
probe them, and they reveal nothing about the platform's data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.auth import TokenVerifier
from llmops.bus.broker import make_producer
from llmops.bus.consumer import Consumer
from llmops.bus.outbox import OutboxRelay, add_to_outbox, purge_published
from llmops.db import Database
from llmops.denials import AnonymousDenials
from llmops.errors import Problem, install_problem_handlers
from llmops.logging import get_logger
from llmops.middleware import BodyLimit, RequestContext
from llmops.openapi import document_problems, problems
from llmops.settings import ServiceSettings
from llmops.storage import ObjectStore
from llmops.tokens import Principal
from llmops_schemas import CloudEvent, EventPayload, new_event
from llmops_schemas.events import AccessDenied

log = get_logger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acts, for events: the principal's subject and the request's correlation id."""

    subject: str
    correlation_id: str | None = None


def from_row(model, row):
    """A response model filled from a database row's columns of the same names."""
    return model(**{name: getattr(row, name) for name in model.model_fields})


def actor_of(request: Request, principal: Principal) -> Actor:
    """The actor of a request made by ``principal``."""
    return Actor(principal.subject, correlation_id(request))


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
        await self.broker.start()
        if self.store is not None:
            await self.store.ensure_bucket()
        if self.run_relay:
            self._producer = make_producer(self.settings.kafka, client_id=f"{self.settings.service}-outbox")
            await self._producer.start()
            self.relay = OutboxRelay(
                self.db,
                self._producer,
                batch_size=self.settings.outbox_batch_size,
                poll_interval=self.settings.outbox_poll_interval,
            )
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
            self.spawn(self._purge_outbox(), name="outbox-purge")
        self.spawn(self.anonymous_denials.run(), name="anonymous-denials")

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


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def correlation_id(request: Request) -> str | None:
    """The correlation id of the request being handled (``X-Correlation-ID``, else its request id)."""
    return getattr(request.state, "correlation_id", None)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # The edge owns the transaction: commit when the route returns, roll back when it raises.
    async with get_runtime(request).db.transaction() as session:
        yield session


# scope "function": the transaction ends (commits) before the response is sent, so a client acting on a 2xx finds what
# it wrote (by default a dependency with yield ends after the response, when a failed commit can no longer be told).
Session = Annotated[AsyncSession, Depends(_session, scope="function")]
CurrentRuntime = Annotated[Runtime, Depends(get_runtime)]


def create_app(
    runtime: Runtime,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    version: str = "0.1.0",
    on_start: Sequence[Callable[[Runtime], Awaitable[None]]] = (),
    on_stop: Sequence[Callable[[Runtime], Awaitable[None]]] = (),
    upload_media_types: Iterable[str] = (),
) -> FastAPI:
    """A FastAPI app for one service, with the platform's cross-cutting routes, errors and lifecycle (``on_start``
    hooks run after the runtime starts, ``on_stop`` hooks before it stops). Every request body is capped at
    ``http_max_body_bytes`` (413), except uploads of ``upload_media_types``, which the routes stream and cap."""
    service = runtime.settings.service

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        for hook in on_start:
            await hook(runtime)
        log.info("service.started", service=service)
        yield
        for hook in on_stop:
            await hook(runtime)
        await runtime.stop()
        log.info("service.stopped", service=service)

    app = FastAPI(title=title, version=version, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.service = service
    app.state.token_verifier = TokenVerifier(runtime.settings.auth)
    app.state.on_denied = runtime.record_denial
    install_problem_handlers(app)

    app.add_middleware(
        BodyLimit,
        limit=runtime.settings.http_max_body_bytes,
        exempt=frozenset(m.lower() for m in upload_media_types),
    )
    app.add_middleware(RequestContext, service=service)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: Postgres, Kafka and the object store answer",
        responses=problems(503),
    )
    async def readyz() -> dict[str, object]:
        checks = await runtime.readiness()
        if any(v != "ok" for v in checks.values()):
            raise Problem(503, "a dependency is not ready", checks=checks)
        return {"status": "ok", "checks": checks}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    document_problems(app)
    return app


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
