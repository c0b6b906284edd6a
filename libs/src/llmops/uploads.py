"""Uploads streamed in a request body (dataset files, model tars): the checks made before a byte is read, and their
OpenAPI description. The body itself is spooled by :func:`llmops.runtime.spool`, which caps what really arrives."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request

from llmops.errors import Problem


def checked_upload(request: Request, media_types: Iterable[str], *, limit: int) -> str:
    """The media type of the upload in ``request``, once it is one of ``media_types`` (else 415) and its declared
    ``Content-Length``, if any, is within ``limit`` bytes (else 413)."""
    accepted = list(media_types)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in accepted:
        raise Problem(415, f"unsupported content type {media or '(none)'!r}; send one of {', '.join(accepted)}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the upload ({declared} bytes) is larger than the limit of {limit} bytes")
    return media


def upload_body(media_types: Iterable[str]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose body is an upload of one of ``media_types`` (read as a stream, so FastAPI
    cannot describe it)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"content": {media: binary for media in media_types}}}
