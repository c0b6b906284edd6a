"""The pure ASGI middlewares of every service's app (a ``BaseHTTPMiddleware`` passes every chunk of a streamed body
through extra tasks and memory streams): request ids, logs context, metrics and crash answers; body limits."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from http import HTTPStatus
from urllib.parse import parse_qsl

import orjson
from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.bus.faults import is_transient
from llmops.errors import PROBLEM_JSON, Problem
from llmops.logging import bound_context, get_logger
from llmops.problems import BodyTooLarge, InvalidInput
from llmops.types import INT64_MAX

log = get_logger(__name__)

REQUESTS = Counter("llmops_http_requests", "HTTP requests answered", ["service", "method", "route", "status"])
LATENCY = Histogram("llmops_http_request_seconds", "HTTP request latency", ["service", "method", "route"])


class RequestContext:
    """Pure ASGI middleware (a ``BaseHTTPMiddleware`` passes every chunk of a streamed body through extra tasks and
    memory streams): gives each request its id (``X-Request-ID``, made up when absent) and correlation id, binds
    both to the logs, returns the request id in the response, and counts requests and latency by route and status
    (500 for a request that raised, 503 for one that met an outage of its infrastructure)."""

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
                except Exception as exc:
                    if is_transient(exc):
                        # Postgres, Kafka or the object store out of reach (restarting, say): no fault of the
                        # service's, and the same request may well succeed shortly: a 503 to retry, one log line.
                        log.warning(
                            "http.dependency_unavailable", method=scope["method"], path=scope["path"], error=repr(exc)
                        )
                        if not responded:
                            await _send_problem(scope, send_with_id, _unavailable(exc))
                        return
                    # Logged here, once, with the request id the 500 answer names; not raised on, so neither
                    # Starlette nor the server logs the same traceback again without it.
                    log.exception("http.unhandled_error", method=scope["method"], path=scope["path"])
                    if responded:  # the response had started: nothing else can be sent
                        return
                    await _send_crash(scope, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(self.service, scope["method"], route).observe(time.perf_counter() - started)
            REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()


#: Seconds a client is told to wait before it retries a request that met an outage.
RETRY_AFTER_SECONDS = 2


def _unavailable(exc: BaseException) -> Problem:
    return Problem(
        503,
        f"a dependency of the service (Postgres, Kafka or the object store) is out of reach ({type(exc).__name__}); "
        "retry shortly",
        type_="urn:llmops:problem:dependency-unavailable",
        headers={"retry-after": str(RETRY_AFTER_SECONDS)},
    )


async def _send_crash(scope: Scope, send: Send) -> None:
    detail = "an internal error occurred; see the service log (request_id names it)"
    await _send_problem(scope, send, Problem(500, detail))


class BodyLimit:
    """Pure ASGI middleware guarding what a request brings before any route sees it:

    - bodies are capped: a declared ``Content-Length`` over ``limit`` is answered 413 at once, and a body that streams
      past it (chunked, or lying about its length) is cut off with 413 as it arrives, so no request makes a service
      hold more than ``limit`` bytes of body;
    - no NUL character gets in (Postgres stores none in text or JSON): one in the path, a query parameter or a JSON
      string or key is a 422 naming where it is.

    Media types in ``exempt`` (uploads, which their routes stream, cap and check) pass untouched."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if errors := _nul_in_path_or_query(scope):
            await _send_problem(scope, send, InvalidInput(errors).problem())
            return
        headers = Headers(scope=scope)
        if headers.get("content-type", "").split(";")[0].strip().lower() in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await _send_problem(scope, send, BodyTooLarge(self.limit).problem())
            return
        received, chunks = 0, []

        async def guarded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
                chunks.append(chunk)
                if not message.get("more_body", False) and (errors := _unstorable_in_json(b"".join(chunks))):
                    raise InvalidInput(errors)
            return message

        await self.app(scope, guarded, send)


def _nul_in_path_or_query(scope: Scope) -> list[dict]:
    errors = []
    if "\x00" in scope.get("path", ""):
        errors.append(_nul_error("<path>", "path"))
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                errors.append(_nul_error(name.replace("\x00", "\\u0000"), "query"))
    return errors


#: What may make a JSON body unstorable: an escaped NUL, an integer of 19 digits or more, a huge exponent.
_SUSPECT_JSON = re.compile(rb"\\u0000|\d{19}|[eE][+-]?\d{3}")


def _unstorable_in_json(body: bytes) -> list[dict]:
    """Where a JSON body holds what Postgres and the event log cannot store: a NUL character in a string or key
    (escaped as \\u0000; a raw one is invalid JSON anyway), an integer outside 64 bits, a number that overflows."""
    if not _SUSPECT_JSON.search(body):
        return []
    try:
        document = json.loads(body)  # the standard parser: it keeps big integers whole, so they can be named
    except ValueError:
        return []  # the route's own parsing says what is wrong with it
    found: list[dict] = []
    pending: list[tuple[str, object]] = [("", document)]
    while pending and len(found) < 20:
        where, value = pending.pop()
        if isinstance(value, str) and "\x00" in value:
            found.append(_nul_error(where or "<root>", "body"))
        elif isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            found.append(_error(where or "<root>", "body", "integers must fit in 64 bits", "int_out_of_range"))
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(_error(where or "<root>", "body", "numbers must be finite", "float_out_of_range"))
        elif isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                if "\x00" in key:
                    found.append(_nul_error(path.replace("\x00", "\\u0000"), "body"))
                pending.append((path, item))
        elif isinstance(value, list):
            pending.extend((f"{where}.{i}" if where else str(i), item) for i, item in enumerate(value))
    return found


def _error(field: str, location: str, message: str, kind: str) -> dict:
    return {"field": field, "location": location, "message": message, "type": kind}


def _nul_error(field: str, location: str) -> dict:
    return _error(field, location, "NUL characters are not allowed", "nul_character")


async def _send_problem(scope: Scope, send: Send, problem: Problem) -> None:
    """Answer a problem from a middleware, before the app (and its exception handlers) run."""
    body = orjson.dumps(
        {
            "type": problem.type,
            "title": problem.title or HTTPStatus(problem.status).phrase,
            "status": problem.status,
            "detail": problem.detail,
            "instance": scope.get("path"),
            "request_id": scope.get("state", {}).get("request_id"),
            **problem.extra,
        }
    )
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (problem.headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
