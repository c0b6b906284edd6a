"""The gateway's OpenAPI document and the request check it states (one source for both).

The gateway speaks OpenAI's API, so its document describes the part of OpenAI's request and answer shapes that the
gateway itself checks and relies on, plus its own extension (``prompt`` by label). Other OpenAI parameters pass
through to the backend (``additionalProperties``). A request that breaks the document is refused with a 400 naming
the field (``param``) before any route is looked up or any backend is called.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import fastjsonschema

from llmops_deployment.gateway.errors import GatewayError

_TEXT = {"type": "string", "maxLength": 1_000_000}
_NAME = {"type": "string", "minLength": 1, "maxLength": 256}

#: Names of prompts and labels, as the prompts service takes them.
_PROMPT_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,127}$"}

_PROMPT_REF = {
    "type": "object",
    "description": "A prompt of the project's registry, rendered by the gateway (the version goes into the record).",
    "required": ["name"],
    "properties": {
        "name": _PROMPT_NAME,
        "label": _PROMPT_NAME,
        "version": {"type": "integer", "minimum": 1, "maximum": 2_147_483_647},
        "variables": {"type": "object"},
    },
    # A label or a version (neither: the latest version).
    "not": {"required": ["label", "version"]},
    "additionalProperties": False,
}

#: One prompt per request (a list of several would be several answers, each up to max_tokens: over what the
#: budget reserved), so a list holds one text; ``n`` is 1 for the same reason.
_ONE_TEXT = {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": 1}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {
            "anyOf": [_TEXT, {"type": "array", "items": {"type": "object"}, "maxItems": 1000}, {"type": "null"}]
        },
        "name": _NAME,
    },
}


def _generation(max_tokens_limit: int) -> dict[str, Any]:
    tokens = {"type": "integer", "minimum": 1, "maximum": max_tokens_limit}
    penalty = {"type": "number", "minimum": -2, "maximum": 2}
    return {
        "model": {**_NAME, "description": "the route to call (a route of the caller's project)"},
        "stream": {"type": "boolean"},
        "stream_options": {
            "anyOf": [{"type": "object", "properties": {"include_usage": {"type": "boolean"}}}, {"type": "null"}]
        },
        "max_tokens": tokens,
        "max_completion_tokens": tokens,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 1},
        "stop": {"anyOf": [_TEXT, {"type": "array", "items": _TEXT, "maxItems": 4}, {"type": "null"}]},
        # JSON's safe integers: past them a number is not read exactly (nor by every backend).
        "seed": {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1},
        "presence_penalty": penalty,
        "frequency_penalty": penalty,
        "user": _NAME,
    }


def request_schemas(max_tokens_limit: int) -> dict[str, dict[str, Any]]:
    """The JSON Schema of each API's request body (``chat.completions``, ``completions``)."""
    return {
        "chat.completions": {
            "type": "object",
            "required": ["model"],
            "properties": {
                **_generation(max_tokens_limit),
                "messages": {"type": "array", "items": _MESSAGE, "maxItems": 10_000},
                "prompt": _PROMPT_REF,
            },
            # Messages, or a prompt of the registry (its messages go first, then any given).
            "anyOf": [
                {"required": ["messages"], "properties": {"messages": {"minItems": 1}}},
                {"required": ["prompt"]},
            ],
            "additionalProperties": True,
        },
        "completions": {
            "type": "object",
            "required": ["model", "prompt"],
            "properties": {
                **_generation(max_tokens_limit),
                "prompt": {"anyOf": [_TEXT, _ONE_TEXT, _PROMPT_REF]},
            },
            "additionalProperties": True,
        },
    }


@cache
def _validators(max_tokens_limit: int) -> dict[str, Any]:
    return {api: fastjsonschema.compile(schema) for api, schema in request_schemas(max_tokens_limit).items()}


#: Clearer words than the validator's where a rule combines several shapes.
_PLAIN = {
    ("chat.completions", None, "anyOf"): ("messages", "messages (a non-empty list) or prompt is required"),
    ("completions", "prompt", "anyOf"): (
        "prompt",
        "prompt must be a text, a list of one text, or a prompt of the registry {name, label or version, variables}",
    ),
    ("chat.completions", "prompt", "not"): ("prompt", "prompt takes a label or a version, not both"),
}


#: The integer fields of a request (their paths): 16.0 is an integer to JSON Schema, so to the document too.
_INTEGERS = (("max_tokens",), ("max_completion_tokens",), ("n",), ("seed",), ("prompt", "version"))


def check_request(api: str, body: Any, max_tokens_limit: int) -> None:
    """Refuse a body that breaks the document: a 400 whose ``param`` names the field (``messages[0].role``). An
    integer written as a whole float (``16.0``), which the document accepts, becomes the integer it is (what the
    gateway and the backends then read)."""
    try:
        _validators(max_tokens_limit)[api](body)
    except fastjsonschema.JsonSchemaValueException as error:
        path = error.name.removeprefix("data").lstrip(".") or None
        if (api, path, error.rule) in _PLAIN:
            param, message = _PLAIN[api, path, error.rule]
            raise GatewayError(400, message, param=param) from None
        message = error.message.replace(error.name, path or "the body", 1)
        too_many = path in ("max_tokens", "max_completion_tokens") and error.rule == "maximum"
        raise GatewayError(400, message, param=path, code="max_tokens_too_large" if too_many else None) from None
    for *parents, key in _INTEGERS:
        holder = body
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(key), float) and holder[key].is_integer():
            holder[key] = int(holder[key])


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "total_tokens": {"type": "integer", "minimum": 0},
    },
}
_MODEL = {
    "type": "object",
    "required": ["id", "object"],
    "properties": {"id": {"type": "string"}, "object": {"const": "model"}},
}
_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}
_CHOICES = {"type": "array", "items": {"type": "object", "required": ["index"]}}


def _answer(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "object", "choices"],
        "properties": {"id": {"type": "string"}, "object": {"const": kind}, "choices": _CHOICES, "usage": _USAGE},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    why = {
        400: "a field breaks this document (its name in `param`), or the body is not JSON",
        401: "no valid platform token or API key",
        403: "the caller may not call this project's routes",
        404: "the route, its deployment or the prompt label is unknown",
        413: "the body is over the gateway's limit",
        422: "the prompt's variables do not fit it, or the input is too long for the model",
        429: "a rate limit or a budget is spent (`Retry-After` says when to retry)",
        500: "the gateway failed",
        502: "the backend's answer was not an OpenAI answer, or it failed",
        503: "no replica of the route's deployments is ready",
        504: "the backend did not answer in time",
    }
    return {
        str(status): {"description": why[status], "content": {"application/json": {"schema": _ERROR}}}
        for status in statuses
    }


def openapi(max_tokens_limit: int) -> dict[str, Any]:
    """The gateway's OpenAPI 3.1 document."""
    requests = request_schemas(max_tokens_limit)
    completion_errors = _errors(400, 401, 403, 404, 413, 422, 429, 500, 502, 503, 504)

    def completion(api: str, kind: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "operationId": api.replace(".", "_"),
                "summary": summary,
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": requests[api]}}},
                "responses": {
                    "200": {
                        "description": "the answer, whole, or as server-sent events when `stream` is true",
                        "content": {
                            "application/json": {"schema": _answer(kind)},
                            # each server-sent event: `data` holds a chunk's JSON, then `[DONE]`
                            "text/event-stream": {"schema": _EVENT},
                        },
                    },
                    **completion_errors,
                },
            }
        }

    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    alive = {"200": {"description": "alive", "content": {"application/json": {"schema": status}}}}
    probe = {"get": {"summary": "", "responses": alive}}
    ready = {
        "get": {
            "summary": "Readiness: the gateway's database answers",
            "responses": {
                "200": {"description": "ready", "content": {"application/json": {"schema": status}}},
                "503": {"description": "not ready", "content": {"application/json": {"schema": status}}},
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LLMOps inference gateway",
            "version": "1",
            "description": "OpenAI-compatible: `model` names a route of the caller's project. Authenticate with a "
            "platform token or a project API key (`Authorization: Bearer ...`); errors are OpenAI error bodies.",
        },
        "paths": {
            "/v1/chat/completions": completion("chat.completions", "chat.completion", "A chat completion"),
            "/v1/completions": completion("completions", "text_completion", "A text completion"),
            "/v1/models": {
                "get": {
                    "operationId": "models",
                    "summary": "The routes of the caller's project",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "the routes, as OpenAI models",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["object", "data"],
                                        "properties": {
                                            "object": {"const": "list"},
                                            "data": {
                                                "type": "array",
                                                "items": _MODEL,
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(401, 403, 500),
                    },
                }
            },
            "/healthz": _summarised(probe, "Liveness"),
            "/health": _summarised(probe, "Liveness (the name some OpenAI-compatible servers use)"),
            "/readyz": ready,
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _summarised(path: dict[str, Any], summary: str) -> dict[str, Any]:
    return {"get": {**path["get"], "summary": summary}}
