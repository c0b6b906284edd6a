"""The pure ASGI middlewares of every service's app (a ``BaseHTTPMiddleware`` passes every chunk of a streamed body
through extra tasks and memory streams): request ids, logs context, metrics and crash answers; body limits."""

from __future__ import annotations

import time
import uuid

import orjson
from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.errors import PROBLEM_JSON, BodyTooLarge
from llmops.logging import bound_context, get_logger

log = get_logger(__name__)

REQUESTS = Counter("llmops_http_requests", "HTTP requests answered", ["service", "method", "route", "status"])
LATENCY = Histogram("llmops_http_request_seconds", "HTTP request latency", ["service", "method", "route"])


class RequestContext:
    """Pure ASGI middleware (a ``BaseHTTPMiddleware`` passes every chunk of a streamed body through extra tasks and
    memory streams): gives each request its id (``X-Request-ID``, made up when absent) and correlation id, binds
    both to the logs, returns the request id in the response, and counts requests and latency by route and status
    (500 for a request that raised)."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        correlation_id = headers.get("x-correlation-id") or request_id
        state = scope.setdefault("state", {})  # what request.state reads
        state["request_id"], state["correlation_id"] = request_id, correlation_id
        status, responded = 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        started = time.perf_counter()
        try:
            with bound_context(request_id=request_id, correlation_id=correlation_id, service=self.service):
                try:
                    await self.app(scope, receive, send_with_id)
                except Exception:
                    # Logged here, once, with the request id the 500 answer names; not raised on, so neither
                    # Starlette nor the server logs the same traceback again without it.
                    log.exception("http.unhandled_error", method=scope["method"], path=scope["path"])
                    if responded:  # the response had started: nothing else can be sent
                        return
                    await _send_crash(scope, send_with_id, request_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(self.service, scope["method"], route).observe(time.perf_counter() - started)
            REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()


async def _send_crash(scope: Scope, send: Send, request_id: str) -> None:
    body = orjson.dumps(
        {
            "type": "about:blank",
            "title": "Internal Server Error",
            "status": 500,
            "detail": "an internal error occurred; see the service log (request_id names it)",
            "instance": scope.get("path"),
            "request_id": request_id,
        }
    )
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Pure ASGI middleware capping request bodies: a declared ``Content-Length`` over ``limit`` is answered 413 at
    once, and a body that streams past it (chunked, or lying about its length) is cut off with 413 as it arrives, so
    no request makes a service hold more than ``limit`` bytes of body. Media types in ``exempt`` (uploads) pass."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if headers.get("content-type", "").split(";")[0].strip().lower() in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        problem = BodyTooLarge(self.limit).problem()
        body = orjson.dumps(
            {
                "type": problem.type,
                "title": "Content Too Large",
                "status": 413,
                "detail": problem.detail,
                "instance": scope.get("path"),
                "request_id": scope.get("state", {}).get("request_id"),
                **problem.extra,
            }
        )
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
