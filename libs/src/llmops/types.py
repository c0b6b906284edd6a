"""Constrained types for what requests bring to the edge: ids, version numbers, offsets, sequence numbers. Each keeps
a value within what Postgres stores (int32 versions, int64 offsets and sequence numbers, UUID ids), so input out of
range is a 422 naming the field, never a database error; body fields are strict (``true`` is no version)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, Strict

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValueError("not a UUID") from exc


def _json_integer(value: object) -> object:
    # JSON Schema's integer: 3 and 3.0, never true or "3" (which lax validation would take for 1 and 3).
    if isinstance(value, bool | str | bytes):
        raise ValueError("Input should be a valid integer")
    return value


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _not_a_number(value: object) -> object:
    # Left alone, a query's "0.5" or a body's 1700000000 would be read as seconds since 1970.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("a date-time with its offset, such as 2026-01-31T12:00:00Z, not a number")
    return value


#: A point in time as RFC 3339 says (with its offset), never a number of seconds.
Timestamp = Annotated[AwareDatetime, Strict(False), BeforeValidator(_not_a_number)]
#: A project name in the path.
ProjectPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
#: An integer in a JSON body as JSON Schema says (3 and 3.0; not a boolean or a string); bound it with ``Field``.
JsonInt = Annotated[int, Strict(False), BeforeValidator(_json_integer)]
#: A version number in a JSON body (an integer, not a boolean or a string).
Version = Annotated[JsonInt, Field(ge=1, le=INT32_MAX)]
#: A version number in the query.
VersionQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX)]
#: A version number in the path.
VersionPath = Annotated[int, Path(ge=1, le=INT32_MAX)]
#: How many rows a listing skips.
Offset = Annotated[int, Query(ge=0, le=INT64_MAX)]
#: A sequence number of the audit log, in the query.
SeqQuery = Annotated[int | None, Query(ge=1, le=INT64_MAX)]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: A UUID in the path (8-4-4-4-12 hex digits), in its canonical lower-case form.
UUIDPath = Annotated[str, Path(pattern=UUID_PATTERN), AfterValidator(_canonical_uuid)]


class RequestBody(BaseModel):
    """A JSON request body: unknown fields are refused, and each value is taken as the schema says it, strictly
    (``0`` is no boolean, ``"3"`` no integer, ``true`` no number), so what the OpenAPI refuses the route refuses.
    Fields whose JSON form is a string of another type (an enum, a date-time) say ``Strict(False)``."""

    model_config = ConfigDict(extra="forbid", strict=True)
