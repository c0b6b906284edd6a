"""The HTTP app factory every service uses: health, readiness, metrics, problem details, request ids, auth wiring,
and the lifecycle of the service's broker, outbox relay and object store.

``/healthz``, ``/readyz`` and ``/metrics`` are the only routes without a bearer token: orchestrators and Prometheus
probe them, and they reveal nothing about the platform's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.auth import TokenVerifier
from llmops.errors import Problem
from llmops.logging import get_logger
from llmops.middleware import BodyLimit, RequestContext
from llmops.openapi import document_problems, problems
from llmops.problems import install_problem_handlers
from llmops.runtime import Runtime

log = get_logger(__name__)


def from_row(model, row):
    """A response model filled from a database row's columns of the same names."""
    return model(**{name: getattr(row, name) for name in model.model_fields})


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_settings(request: Request) -> Any:
    """The service's settings (``app.state.settings``, set by its composition root); a service types it with an
    alias, e.g. ``SettingsDep = Annotated[PromptsSettings, Depends(get_settings)]``."""
    return request.app.state.settings


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

_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})


def create_app(
    runtime: Runtime,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    version: str = "0.1.0",
    on_start: Sequence[Callable[[Runtime], Awaitable[None]]] = (),
    on_stop: Sequence[Callable[[Runtime], Awaitable[None]]] = (),
    upload_media_types: Iterable[str] = (),
    extra_metrics: Callable[[], Awaitable[str]] | None = None,
) -> FastAPI:
    """A FastAPI app for one service, with the platform's cross-cutting routes, errors and lifecycle (``on_start``
    hooks run after the runtime starts, ``on_stop`` hooks before it stops). Every request body is capped at
    ``http_max_body_bytes`` (413), except uploads of ``upload_media_types``, which the routes stream and cap.
    ``extra_metrics`` returns more Prometheus text for ``/metrics`` (the monitoring service's inference metrics)."""
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

    # FastAPI's own OpenTelemetry instrumentation records a server span per request (and spans for dependencies,
    # the endpoint, serialization) once the process exports traces (llmops.tracing.configure_tracing); probes
    # and scrapes are left out.
    app = FastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
        telemetry={"exclude": lambda scope: scope.get("path") in _UNTRACED},
    )
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
        body = generate_latest()
        if extra_metrics is not None:
            body += (await extra_metrics()).encode()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    document_problems(app)
    return app
