"""Every error a route can answer, documented in its OpenAPI operation from one place.

A route declares its permission (``llmops.auth.requires``), its parameters and its body; from those the app factory
knows which problems it can answer, so routes only declare the answers particular to them (``responses=problems(
404)``, say). Every answer of 400 and above is an RFC 9457 ``application/problem+json`` document.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from llmops.errors import PROBLEM_JSON
from llmops.routes import api_routes, route_permission

_PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem (about:blank for a plain one)"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, for a person"},
        "instance": {"type": "string", "description": "The request path"},
        "request_id": {"type": ["string", "null"], "description": "Find the request in the service's log with it"},
    },
    "additionalProperties": True,
}
_VALIDATION_PROBLEM = {
    "allOf": [
        {"$ref": "#/components/schemas/Problem"},
        {
            "type": "object",
            "properties": {
                "errors": {
                    "description": "Each refused field (absent when the content as a whole is refused)",
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {
                            "field": {"type": "string", "description": "The refused field, dotted"},
                            "location": {"type": ["string", "null"], "description": "path, query, header or body"},
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                }
            },
        },
    ]
}

#: What each status means when the factory documents it for a route.
_MEANINGS = {
    400: "The request could not be read (a malformed body)",
    401: "No bearer token, or one that is invalid or expired",
    403: "The token lacks the permission, or the project is not one of the caller's",
    404: "A resource the path names does not exist",
    409: "The request conflicts with the resource's current state",
    413: "The request body is larger than the service's limit",
    415: "The request body's media type is not one the route takes",
    422: "A field is invalid; `errors` names each one",
    500: "The service failed; the `request_id` finds it in the service's log",
    503: "A dependency (Postgres, Kafka, the object store) is not ready",
}
#: FastAPI's own descriptions of error answers, replaced by the meanings above.
_GENERIC = frozenset({None, "", "Validation Error", "Additional Response"})
_WRITES = frozenset({"post", "put", "patch", "delete"})


class NDJSONResponse(StreamingResponse):
    """A streamed body of JSON lines (``application/x-ndjson``); as a route's ``response_class``, documented so."""

    media_type = "application/x-ndjson"


def streamed(*media_types: str, description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that streams text in one of ``media_types`` (besides its response class's)."""
    return {200: {"description": description, "content": {m: {"schema": {"type": "string"}} for m in media_types}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own problem answers, for its ``responses=``: ``problems(404)``."""
    return {status: {"description": _MEANINGS[status]} for status in statuses}


def _answer(status: int, description: str | None = None) -> dict[str, Any]:
    schema = "ValidationProblem" if status == 422 else "Problem"
    return {
        "description": description or _MEANINGS.get(status) or HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def route_problems(route: APIRoute | None, method: str, operation: dict[str, Any]) -> list[int]:
    """The problem statuses a route answers by its shape: 401/403 with a permission, 404 for a resource path,
    400/413 with a body (415 too for an upload), 409 for a write, 422 with any input, 500 and 503 (an outage of
    Postgres, Kafka or the object store) always."""
    statuses = {500, 503}
    if route is None:
        return sorted(statuses)
    if route_permission(route) is not None:
        statuses |= {401, 403}
    path_params = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
    if path_params - {"project"}:
        statuses.add(404)
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses |= {400, 413}
        if set(operation["requestBody"].get("content", {})) - {"application/json"}:
            statuses.add(415)  # an upload, whose route checks the media type
    if method in _WRITES and route_permission(route) is not None:
        statuses.add(409)
    return sorted(statuses)


def document_problems(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document every problem answer of every route as ``application/problem+json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
        )
        by_operation = {
            (route.path_format, method.lower()): route for route in api_routes(app) for method in route.methods
        }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        components["Problem"] = _PROBLEM
        components["ValidationProblem"] = _VALIDATION_PROBLEM
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for status in route_problems(by_operation.get((path, method)), method, operation):
                    responses.setdefault(str(status), {})
                for status, answer in list(responses.items()):
                    if status.isdigit() and int(status) >= 400:
                        described = (answer or {}).get("description")
                        responses[status] = _answer(int(status), None if described in _GENERIC else described)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
