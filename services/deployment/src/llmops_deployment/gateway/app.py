"""The inference gateway's composition: a plain Starlette app (orjson in and out, no per-request validation layer),
an asyncpg pool for its few queries, a pooled HTTP client to the backends, limits and budgets, and the records'
buffer. ``build_gateway(settings)`` returns the ASGI app; its lifespan starts and stops the parts (tests that serve
it without lifespan call ``app.state.gateway.start()``/``stop()``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmops import tracing
from llmops.auth import AuthError, TokenVerifier
from llmops.denials import AnonymousDenials
from llmops.logging import get_logger
from llmops.storage import ObjectStore
from llmops_deployment.gateway.auth import Authenticator
from llmops_deployment.gateway.errors import GatewayError
from llmops_deployment.gateway.handler import Handler
from llmops_deployment.gateway.metrics import Metrics
from llmops_deployment.gateway.openapi import openapi
from llmops_deployment.gateway.prompts import Prompts
from llmops_deployment.gateway.records import SOURCE, Records
from llmops_deployment.gateway.routing import Router
from llmops_deployment.gateway.store import Store, create_pool
from llmops_deployment.gateway.upstream import Upstream
from llmops_deployment.gateway.usage import Tokenizers
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas import new_event
from llmops_schemas.events import AccessDenied

log = get_logger(__name__)


async def _release_expired(budgets: Any, settings: DeploymentSettings) -> None:
    """Release, now and then, the reservations a gateway never settled (a replica killed mid-request): any replica
    may, the database function takes each once."""
    every = max(1.0, min(60.0, settings.reservation_ttl_seconds / 4))
    while True:
        await asyncio.sleep(every)
        try:
            released = await budgets.release_expired()
        except Exception as exc:  # Postgres away for a moment: the next round tries again
            log.warning("gateway.reservations.release_failed", error=repr(exc))
            continue
        if released:
            log.info("gateway.reservations.released", count=released)


class Gateway:
    """What a gateway process holds for its lifetime."""

    def __init__(
        self,
        settings: DeploymentSettings,
        *,
        budgets: Callable[[Any, DeploymentSettings], Any] | None = None,
        limiter: Any = None,
        store: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self._budgets_factory = budgets
        self.limiter = limiter
        self.object_store = store
        self.records = Records(settings.kafka, capacity=settings.record_buffer, text_mode=settings.record_text)
        self.metrics = Metrics(self.records)
        self.denials = AnonymousDenials(self._publish_denial, window_seconds=settings.denial_window_seconds)
        self.handler: Handler | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        settings = self.settings
        self.pool = await create_pool(settings.db_url)
        db = Store(self.pool)
        if self._budgets_factory is None:
            from llmops_deployment.gateway.budgets import Budgets

            self._budgets_factory = Budgets
        if self.limiter is None:
            from llmops_deployment.gateway.limits import RateLimiter

            self.limiter = RateLimiter(settings.default_requests_per_minute, settings.default_tokens_per_minute)
        if self.object_store is None:
            self.object_store = ObjectStore(settings.s3)
        self.upstream = Upstream(settings)
        self.prompts = Prompts(settings)
        self.handler = Handler(
            settings,
            auth=Authenticator(db, TokenVerifier(settings.auth), settings.gateway_cache_seconds),
            router=Router(db, settings.gateway_cache_seconds),
            upstream=self.upstream,
            limiter=self.limiter,
            budgets=(budgets := self._budgets_factory(self.pool, settings)),
            prompts=self.prompts,
            tokenizers=Tokenizers(self.object_store),
            records=self.records,
            metrics=self.metrics,
            on_denied=self.denied,
            store=db,
        )
        self.records.start()
        self._tasks.append(asyncio.create_task(self.denials.run(), name="gateway-denials"))
        self._tasks.append(asyncio.create_task(_release_expired(budgets, settings), name="gateway-reservations"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.denials.flush()
        if self.handler is not None:
            await self.handler.drain()
        await self.records.stop()
        await self.upstream.aclose()
        await self.prompts.aclose()
        await self.pool.close()

    def denied(self, request: Request, error: AuthError, subject: str | None, project: str | None) -> None:
        denial = AccessDenied(
            service="deployment-gateway",
            status=error.status,
            reason=error.reason,
            permission="deployment.infer",
            method=request.method,
            path=request.url.path,
            principal=subject,
            project=project,
            request_id=request.state.request_id,
            source=request.client.host if request.client else None,
        )
        if subject is None and error.status == 401:
            self.denials.add(denial, request.state.request_id)  # counted per source, one event a window
        else:
            self.records.submit(_denial_event(denial, subject or "anonymous", request.state.request_id))

    async def _publish_denial(self, denial: AccessDenied, subject: str, correlation_id: str | None) -> None:
        self.records.submit(_denial_event(denial, subject, correlation_id))


def _denial_event(denial: AccessDenied, subject: str, correlation_id: str | None):
    return new_event(denial, subject=subject, source=SOURCE, correlation_id=correlation_id)


def build_gateway(settings: DeploymentSettings | None = None, **parts: Any) -> Starlette:
    """The gateway's ASGI app; ``parts`` replace its budgets factory, limiter or object store (tests)."""
    gateway = Gateway(settings or DeploymentSettings(), **parts)

    async def chat(request: Request) -> Response:
        return await gateway.handler.complete(request, "chat.completions")

    async def completions(request: Request) -> Response:
        return await gateway.handler.complete(request, "completions")

    async def models(request: Request) -> Response:
        return await gateway.handler.models(request)

    async def metrics(request: Request) -> Response:
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    document = orjson.dumps(openapi(gateway.settings.max_tokens_limit))

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def ready(request: Request) -> Response:
        # Postgres only: routes, keys and budgets live there. Kafka is not a dependency of a request (records
        # wait in the bounded buffer while it is away), so its absence does not take the gateway out of rotation.
        try:
            await asyncio.wait_for(gateway.pool.fetchval("SELECT 1"), 3)
        except Exception as exc:
            body = {"status": "not ready", "checks": {"postgres": f"error: {exc!r}"[:300]}}
            return Response(orjson.dumps(body), status_code=503, media_type="application/json")
        return Response(b'{"status":"ok","checks":{"postgres":"ok"}}', media_type="application/json")

    @asynccontextmanager
    async def lifespan(app):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/readyz", ready, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={
            GatewayError: lambda request, exc: exc.response(getattr(request.state, "request_id", None))
        },
    )
    app.state.gateway = gateway
    if tracing.enabled():  # a server span per request (the process exports traces: llmops.tracing)
        return tracing.TracingMiddleware(app, skip=frozenset({"/health", "/healthz", "/readyz", "/metrics"}))
    return app


__all__ = ["Gateway", "build_gateway", "orjson"]
