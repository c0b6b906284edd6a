"""HTTP routes of the audit service. Auditors and admins only; every other role is refused (and that is audited)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from llmops.auth import ALL_PROJECTS, Permission, Principal, Role, cross_project, require_project, requires
from llmops.errors import Problem
from llmops.http import CurrentRuntime, Session
from llmops.openapi import NDJSONResponse, streamed
from llmops.types import INT64_MAX, SeqQuery, Timestamp
from llmops_audit import export, queries, service
from llmops_audit.chain import Signer
from llmops_audit.queries import AuditFilter

READ_AUDIT = Permission("audit.read", {Role.AUDITOR})
SIGN_CHECKPOINT = Permission("audit.checkpoint.sign", {Role.AUDITOR})

router = APIRouter(prefix="/audit", tags=["audit"])
Reader = Annotated[Principal, Depends(requires(READ_AUDIT))]


class Filters(BaseModel):
    """Query filters; times select on the event's own time, ``[from_time, to_time)``."""

    model_config = {"extra": "forbid"}

    from_time: Timestamp | None = None
    to_time: Timestamp | None = None
    actor: str | None = Field(default=None, max_length=512)
    type: str | None = Field(default=None, max_length=256)
    subject: str | None = Field(default=None, max_length=512)
    project: str | None = Field(default=None, max_length=256)
    correlation_id: str | None = Field(default=None, max_length=256)

    @field_validator("to_time")
    @classmethod
    def _after_from_time(cls, value: AwareDatetime | None, info) -> AwareDatetime | None:
        start = info.data.get("from_time")
        if value is not None and start is not None and value <= start:
            raise ValueError("to_time must be later than from_time")
        return value


class PageQuery(Filters):
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=64, description="next_cursor of the previous page")


class ExportQuery(Filters):
    format: Literal["jsonl", "csv"] = "jsonl"
    from_seq: int | None = Field(default=None, ge=1, le=INT64_MAX)
    to_seq: int | None = Field(default=None, ge=1, le=INT64_MAX)


class Entry(BaseModel):
    """An entry of the log. Its columns (event_id to time) copy attributes of the hashed ``event``, and
    ``GET /audit/verify`` checks each against it; ``recorded_at`` is the one value the chain does not cover."""

    seq: int
    event_id: str
    type: str
    source: str
    subject: str
    actor: str | None
    project: str | None
    correlation_id: str | None
    causation_id: str | None
    time: datetime
    recorded_at: datetime = Field(
        description="when the log received the entry, set by the database: not in the hashed event, so not covered "
        "by the chain or its checkpoints (and not exported); the event's own time is `time`"
    )
    event: dict[str, Any] = Field(description="the event as recorded (sensitive payload fields as hashes)")
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row) -> Entry:
        return cls(**{**row._asdict(), "event_id": str(row.event_id), "event": json.loads(row.event)})


class Page(BaseModel):
    items: list[Entry]
    next_cursor: str | None


class Checkpoint(BaseModel):
    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    public_key: str
    signature: str


async def scope(request: Request, principal: Principal, filters: Filters) -> frozenset[str] | None:
    """The projects the caller may see (None: all); a project filter outside them is refused with 403."""
    if filters.project is not None:
        await require_project(request, principal, filters.project)
    return None if ALL_PROJECTS in principal.projects else principal.projects


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "seq" and value.isdigit():
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise Problem(
        422,
        "invalid input: cursor",
        type_="urn:llmops:problem:validation",
        errors=[
            {"field": "cursor", "location": "query", "message": "not a cursor this API returned", "type": "value_error"}
        ],
    )


def audit_filter(filters: Filters, projects, **extra) -> AuditFilter:
    fields = filters.model_dump(include=set(Filters.model_fields))
    return AuditFilter(**fields, projects=projects, **extra)


@router.get(
    "/events",
    summary="Query the log by time, actor, type, subject, project, correlation id",
    openapi_extra=cross_project("results filtered by the token's projects"),
)
async def query_events(request: Request, session: Session, principal: Reader, q: Annotated[PageQuery, Query()]) -> Page:
    projects = await scope(request, principal, q)
    after = decode_cursor(q.cursor) if q.cursor else None
    rows = await queries.query(session, audit_filter(q, projects), after_seq=after, limit=q.limit)
    next_cursor = encode_cursor(rows[-1].seq) if len(rows) == q.limit else None
    return Page(items=[Entry.of(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/subjects/{subject}/history",
    summary="Every event about a resource and the events it caused or came from",
    openapi_extra=cross_project("results filtered by the token's projects"),
)
async def subject_history(
    request: Request,
    session: Session,
    principal: Reader,
    subject: Annotated[str, Path(min_length=1, max_length=512)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[Entry]:
    projects = await scope(request, principal, Filters())
    return [Entry.of(r) for r in await queries.history(session, subject, projects=projects, limit=limit)]


@router.get(
    "/export",
    summary="Stream the selected entries with their chain hashes and checkpoints (JSONL or CSV)",
    openapi_extra=cross_project("entries filtered by the token's projects"),
    response_class=NDJSONResponse,
    responses=streamed("text/csv", description="JSON lines (format=jsonl, the default) or CSV (format=csv)"),
)
async def export_log(
    request: Request, runtime: CurrentRuntime, principal: Reader, q: Annotated[ExportQuery, Query()]
) -> StreamingResponse:
    projects = await scope(request, principal, q)
    where = audit_filter(q, projects, from_seq=q.from_seq, to_seq=q.to_seq)
    signer: Signer = request.app.state.signer
    filters = {k: v for k, v in q.model_dump(mode="json").items() if v is not None and k != "format"}

    async def records():
        yield export.header(
            contiguous=where.is_range_only, filters=filters, public_key=signer.public_key_b64, key_id=signer.key_id
        )
        first = last = None
        count = 0
        async for row in queries.export_rows(runtime.db, where):
            first = row.seq if first is None else first
            last = row.seq
            count += 1
            yield export.entry_record(row)
        if first is not None:
            async with runtime.db.sessions() as session:
                for checkpoint in await queries.checkpoints(session, from_seq=first, to_seq=last):
                    yield export.checkpoint_record(checkpoint)
        yield export.trailer(count, first, last)

    async def body():
        if q.format == "jsonl":
            async for record in records():
                yield export.jsonl_line(record)
        else:
            yield export.csv_header()
            async for record in records():
                yield export.csv_row(record)

    media = "application/x-ndjson" if q.format == "jsonl" else "text/csv"
    name = f"audit-export.{q.format}"
    return StreamingResponse(
        body(), media_type=media, headers={"content-disposition": f'attachment; filename="{name}"'}
    )


@router.get(
    "/verify",
    summary="Recompute the chain over a range (default all) and check the signed checkpoints",
    openapi_extra=cross_project("the whole chain: hashes, counts and sequence numbers, no event content"),
)
async def verify_chain(
    request: Request,
    runtime: CurrentRuntime,
    principal: Reader,
    from_seq: SeqQuery = None,
    to_seq: SeqQuery = None,
) -> dict[str, Any]:
    if from_seq is not None and to_seq is not None and to_seq < from_seq:
        raise Problem(
            422,
            "invalid input: to_seq",
            type_="urn:llmops:problem:validation",
            errors=[
                {"field": "to_seq", "location": "query", "message": "to_seq must be >= from_seq", "type": "value_error"}
            ],
        )
    signer: Signer = request.app.state.signer
    report = await service.verify(runtime.db, signer.public_key, from_seq=from_seq, to_seq=to_seq)
    return report.as_dict()


@router.get(
    "/checkpoints",
    summary="The signed checkpoints",
    openapi_extra=cross_project("the signed chain heads: hashes only, no event content"),
)
async def list_checkpoints(session: Session, principal: Reader) -> list[Checkpoint]:
    return [Checkpoint(**c.model_dump()) for c in await queries.checkpoints(session)]


@router.post(
    "/checkpoints",
    status_code=201,
    summary="Sign the current head now",
    openapi_extra=cross_project("signs the chain head: no event content"),
)
async def sign_checkpoint(
    request: Request,
    session: Session,
    runtime: CurrentRuntime,
    principal: Annotated[Principal, Depends(requires(SIGN_CHECKPOINT))],
) -> Checkpoint:
    checkpoint = await service.sign_checkpoint(session, request.app.state.signer, source=runtime.source, force=True)
    if checkpoint is None:
        raise Problem(409, "the audit log is empty: there is no head to sign")
    return Checkpoint(**checkpoint.model_dump())
