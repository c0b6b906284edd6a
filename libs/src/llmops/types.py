"""Constrained types for what requests bring to the edge: ids, version numbers, offsets, sequence numbers. Each keeps
a value within what Postgres stores (int32 versions, int64 offsets and sequence numbers, UUID ids), so input out of
range is a 422 naming the field, never a database error; body fields are strict (``true`` is no version)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field, StrictInt

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValueError("not a UUID") from exc


#: A project name in the path.
ProjectPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
#: A version number in a JSON body (an integer, not a boolean or a string).
Version = Annotated[StrictInt, Field(ge=1, le=INT32_MAX)]
#: A version number in the path.
VersionPath = Annotated[int, Path(ge=1, le=INT32_MAX)]
#: How many rows a listing skips.
Offset = Annotated[int, Query(ge=0, le=INT64_MAX)]
#: A sequence number of the audit log, in the query.
SeqQuery = Annotated[int | None, Query(ge=1, le=INT64_MAX)]
#: A UUID in the path, in its canonical lower-case form.
UUIDPath = Annotated[str, Path(min_length=32, max_length=45), AfterValidator(_canonical_uuid)]
