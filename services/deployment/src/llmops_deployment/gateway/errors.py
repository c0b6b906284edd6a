"""OpenAI-style errors: ``{"error": {"message", "type", "param", "code"}}`` with the status the official clients map to
their exception classes (401 AuthenticationError, 404 NotFoundError, 429 RateLimitError ...)."""

from __future__ import annotations

import orjson
from starlette.responses import Response

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """A request the gateway answers with an error (and records as ``inference.failed`` when it got that far)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or _TYPES.get(status, "api_error")
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, request_id: str | None = None) -> Response:
        headers = dict(self.headers or {})
        if request_id:
            headers["x-request-id"] = request_id
        return Response(orjson.dumps(self.body()), self.status, headers, media_type="application/json")


class UpstreamError(Exception):
    """A backend failed: ``retryable`` when a fallback may be tried (timeout, 5xx, connection error before any byte
    reached the client)."""

    def __init__(self, status: int, message: str, *, retryable: bool, connection: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.retryable, self.connection = status, message, retryable, connection
