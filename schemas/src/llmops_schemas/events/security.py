"""Security events: every denied request is a fact the audit log keeps."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload


class AccessDenied(EventPayload):
    """A request was refused: 401 (no or invalid credentials) or 403 (authenticated, not allowed).

    Subject: the principal's id, or ``anonymous`` when no valid token was given.
    """

    event_type: ClassVar[str] = "security.access.denied"
    topic: ClassVar[str] = topics.SECURITY

    service: str = Field(description="the service that refused the request")
    status: Literal[401, 403]
    reason: str = Field(description="why, e.g. missing_token, invalid_token, missing_role, wrong_project")
    permission: str | None = Field(default=None, description="the permission the route declares")
    method: str
    path: str
    principal: str | None = None
    roles: tuple[str, ...] = ()
    project: str | None = None
    request_id: str | None = None
    source: str | None = Field(default=None, max_length=256, description="the client's address")
    count: int = Field(
        default=1,
        ge=1,
        description="how many requests this event stands for: anonymous refusals (401) are counted per source and "
        "window, so a flood cannot fill the audit log; the other fields are those of the first",
    )
    window_seconds: int | None = Field(default=None, ge=1, description="the window anonymous refusals are counted in")
