"""The platform's errors, free of any web framework: the service layer raises them, the edge (:mod:`llmops.problems`)
answers them as RFC 9457 problem documents (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answered as a problem document; ``extra`` members are added to it (e.g. ``errors``)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.title, self.type = status, detail, title, type_
        self.headers, self.extra = headers, extra


class Forbidden(Problem):
    """The caller may not do this (403): the edge answers it and publishes the ``security.access.denied`` event, as
    for a permission the token lacks. ``reason`` names the rule (``protected_label``), in the problem's type too."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(403, detail, type_=f"urn:llmops:problem:{reason}")
        self.reason = reason


def unprocessable(detail: str, field: str, location: str = "body") -> Problem:
    """A 422 naming the one field at fault, in the same shape as the edge's validation problems."""
    return Problem(
        422,
        detail,
        type_="urn:llmops:problem:validation",
        errors=[{"field": field, "location": location, "message": detail, "type": "value_error"}],
    )
