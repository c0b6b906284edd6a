"""The HTTP edge of :mod:`llmops.errors`: errors met while a request streams in, and the exception handlers that
answer every error (domain, HTTP, validation, crash) as an RFC 9457 problem document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmops.auth import AuthError, record_denial
from llmops.bus.outbox import EventTooLarge
from llmops.errors import PROBLEM_JSON, Forbidden, Problem
from llmops.logging import get_logger

log = get_logger(__name__)


class BodyTooLarge(StarletteHTTPException):
    """A request body over the service's limit, found while it streams in (an HTTP exception, so that the framework's
    body parsing passes it on instead of answering 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")
        self.limit = limit

    def problem(self) -> Problem:
        return Problem(413, str(self.detail), type_="urn:llmops:problem:body-too-large", limit_bytes=self.limit)


class InvalidInput(StarletteHTTPException):
    """Input refused at the edge before the route sees it (a NUL character, say), answered as a validation problem
    naming each field; an HTTP exception, so that the framework's body parsing passes it on."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(422, "invalid input: " + ", ".join(sorted({e["field"] for e in errors})))

    def problem(self) -> Problem:
        return Problem(422, str(self.detail), type_="urn:llmops:problem:validation", errors=self.errors)


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    from http import HTTPStatus

    body = {
        "type": problem.type,
        "title": problem.title or HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
        **problem.extra,
    }
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def allowed_methods(request: Request) -> list[str]:
    """Every method the app's routes take at the request's path (the router's own 405 names only the first route's,
    and a path such as ``/projects/{project}/prompts`` has one route for GET and another for POST)."""
    from llmops.routes import api_routes

    path = request.url.path
    matching = [route for route in api_routes(request.app) if route.path_regex.match(path)]
    # A path is the most literal routes' that match it: ``.../things/replay`` is the route of that name's, not the
    # template's ``.../things/{thing}``.
    literal = [sum(not part.startswith("{") for part in route.path.split("/")) for route in matching]
    most = max(literal, default=0)
    return sorted({m for route, count in zip(matching, literal, strict=True) if count == most for m in route.methods})


def install_problem_handlers(app: FastAPI) -> None:
    """Answer Problem, HTTP errors, validation errors (422 naming each field) and crashes as problem documents."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(Forbidden)
    async def on_forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        # The same security event as a permission the token lacks (the principal is the authenticated one).
        error = AuthError(403, exc.reason, exc.detail)
        await record_denial(request, error, permission=None, principal=getattr(request.state, "principal", None))
        return problem_response(request, exc)

    @app.exception_handler(BodyTooLarge)
    async def on_body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return problem_response(request, exc.problem())

    @app.exception_handler(InvalidInput)
    async def on_invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
        return problem_response(request, exc.problem())

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:
            kept = {k: v for k, v in (headers or {}).items() if k.lower() != "allow"}
            headers = {**kept, "allow": ", ".join(allowed_methods(request))}
        return problem_response(request, Problem(exc.status_code, str(exc.detail), headers=headers))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")) or "<root>",
                "location": str(e["loc"][0]) if e["loc"] else None,
                "message": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        fields = ", ".join(sorted({e["field"] for e in errors}))
        problem = Problem(422, f"invalid input: {fields}", type_="urn:llmops:problem:validation", errors=errors)
        return problem_response(request, problem)

    @app.exception_handler(EventTooLarge)
    async def on_event_too_large(request: Request, exc: EventTooLarge) -> JSONResponse:
        problem = Problem(
            413, str(exc), type_="urn:llmops:problem:event-too-large", limit_bytes=exc.limit, size_bytes=exc.size
        )
        return problem_response(request, problem)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("http.unhandled_error", path=request.url.path)
        return problem_response(request, Problem(500, "an internal error occurred; see the service log"))
