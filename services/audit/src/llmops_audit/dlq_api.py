"""The admin API of the dead-letter topic, served by the audit service: list, show and replay dead letters.

Dead letters can hold any project's data, so every route is for admins whose token covers every project (``*``).
A replay is recorded as ``platform.dead_letters.replayed`` through the audit service's outbox, so the audit log
shows the cause of the events a replay brings back.
"""

from __future__ import annotations

import base64
from datetime import datetime
from itertools import islice
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator
from starlette.convertors import StringConvertor, register_url_convertor

from llmops.auth import ALL_PROJECTS, AuthError, Permission, Principal, actor_of, cross_project, deny, requires
from llmops.bus import add_to_outbox
from llmops.bus.dead_letters import (
    ID_PATTERN,
    DeadLetter,
    DeadLetterReader,
    ReplayFailed,
    ReplayReport,
    Selection,
    replay,
)
from llmops.errors import Problem
from llmops.http import CurrentRuntime
from llmops.openapi import problems
from llmops.runtime import Runtime
from llmops.types import RequestBody, Timestamp
from llmops_schemas.events import DeadLettersReplayed
from llmops_schemas.events.dead_letters import MAX_REPLAYED_IDS

# Admin only (a Permission always includes admin): dead letters are every project's data, unfiltered.
READ_DEAD_LETTERS = Permission("dead_letters.read", set())
REPLAY_DEAD_LETTERS = Permission("dead_letters.replay", set())

router = APIRouter(prefix="/admin/dead-letters", tags=["dead letters"])


class _LetterIdConvertor(StringConvertor):
    """A path segment naming a dead letter, which ``replay`` never does: a GET of ``/admin/dead-letters/replay`` is
    a 405 (only POST is), not a malformed id; any other segment reaches the route, which refuses a malformed id 422."""

    regex = "(?!replay$)[^/]+"


register_url_convertor("letter_id", _LetterIdConvertor())
LetterId = Annotated[str, Field(pattern=ID_PATTERN, description="<partition>-<offset> on the dead-letter topic")]


def everywhere(permission: Permission):
    """A dependency: the caller holds ``permission`` and its token covers every project, else 401/403 (recorded)."""
    holds = requires(permission)

    # A default, not Annotated: string annotations (this module's future import) cannot name the local ``holds``.
    async def dependency(request: Request, principal: Principal = Depends(holds)) -> Principal:
        if ALL_PROJECTS not in principal.projects:
            error = AuthError(403, "wrong_project", "dead letters hold every project's data: the token needs scope *")
            await deny(request, error, permission=permission, principal=principal)
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # as requires(): tests list each permission
    return dependency


Reader = Annotated[Principal, Depends(everywhere(READ_DEAD_LETTERS))]
Replayer = Annotated[Principal, Depends(everywhere(REPLAY_DEAD_LETTERS))]


class Filter(BaseModel):
    """Which dead letters: reason, consumer, original topic, and when they were dead-lettered (``[from, to)``)."""

    model_config = {"extra": "forbid"}

    reason: str | None = Field(default=None, max_length=128, description="e.g. handler_failed, not_json")
    consumer: str | None = Field(default=None, max_length=256, description="the consumer that gave up")
    topic: str | None = Field(default=None, max_length=249, description="the original topic")
    from_time: Timestamp | None = None
    to_time: Timestamp | None = None

    @field_validator("to_time")
    @classmethod
    def _after_from_time(cls, value: AwareDatetime | None, info) -> AwareDatetime | None:
        start = info.data.get("from_time")
        if value is not None and start is not None and value <= start:
            raise ValueError("to_time must be later than from_time")
        return value

    def selection(self) -> Selection:
        return Selection(**self.model_dump(include=set(Filter.model_fields)))

    def is_empty(self) -> bool:
        return all(value is None for value in self.model_dump(include=set(Filter.model_fields)).values())


class PageQuery(Filter):
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, pattern=ID_PATTERN, description="next_cursor of the previous page")


class ReplayRequest(RequestBody):
    """Exactly one selector: ``ids``, ``filter`` (at least one field) or ``all``."""

    ids: list[LetterId] | None = Field(default=None, min_length=1, max_length=MAX_REPLAYED_IDS)
    filter: Filter | None = None
    all: bool = False
    dry_run: bool = Field(default=False, description="select and count, publish nothing")

    @model_validator(mode="after")
    def _one_selector(self) -> ReplayRequest:
        if self.filter is not None and self.filter.is_empty():
            raise ValueError("filter needs at least one field (all=true replays every dead letter)")
        if sum((self.ids is not None, self.filter is not None, self.all)) != 1:
            raise ValueError("give exactly one selector: ids, filter, or all=true")
        return self

    @property
    def selector(self) -> Literal["ids", "filter", "all"]:
        return "ids" if self.ids is not None else "filter" if self.filter is not None else "all"


class Summary(BaseModel):
    id: str
    partition: int
    offset: int
    time: datetime = Field(description="when it was dead-lettered")
    reason: str | None
    error: str | None = Field(description="the error (the first 300 characters in lists)")
    consumer: str | None
    topic: str | None = Field(description="the original topic")
    original_partition: int | None
    original_offset: int | None
    attempts: int | None
    key: str | None = Field(description="the record's key (UTF-8, undecodable bytes replaced)")
    size: int = Field(description="the value's size in bytes")

    @classmethod
    def of(cls, letter: DeadLetter, *, error_chars: int = 300) -> Summary:
        return cls(
            id=letter.id,
            partition=letter.partition,
            offset=letter.offset,
            time=letter.time,
            reason=letter.reason,
            error=letter.error[:error_chars] if letter.error is not None else None,
            consumer=letter.consumer,
            topic=letter.topic,
            original_partition=letter.original_partition,
            original_offset=letter.original_offset,
            attempts=letter.attempts,
            key=letter.key.decode(errors="replace") if letter.key is not None else None,
            size=len(letter.value),
        )


class Detail(Summary):
    headers: dict[str, str] = Field(description="every header of the dead letter")
    original_headers: dict[str, str] = Field(description="the headers the record had on its original topic")
    value_preview: str = Field(description="the value's first preview_bytes bytes")
    value_encoding: Literal["utf-8", "base64"] = Field(description="utf-8 text, or base64 of bytes that are not")
    value_truncated: bool

    @classmethod
    def of_letter(cls, letter: DeadLetter, preview_bytes: int) -> Detail:
        preview, encoding = value_preview(letter.value, preview_bytes)
        summary = Summary.of(letter, error_chars=4000).model_dump()
        return cls(
            **summary,
            headers=letter.headers,
            original_headers=letter.original_headers,
            value_preview=preview,
            value_encoding=encoding,
            value_truncated=len(letter.value) > preview_bytes,
        )


def value_preview(value: bytes, size: int) -> tuple[str, Literal["utf-8", "base64"]]:
    """The first ``size`` bytes as text when they are UTF-8, else as base64."""
    head = value[:size]
    try:
        return head.decode(), "utf-8"
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return head[: exc.start].decode(), "utf-8"  # the cut split a multi-byte character: text up to it
        return base64.b64encode(head).decode(), "base64"


class Page(BaseModel):
    items: list[Summary]
    next_cursor: str | None


class Replayed(BaseModel):
    dry_run: bool
    count: int = Field(description="dead letters replayed (or, dry, that would be)")
    topics: dict[str, int] = Field(description="original topic -> count")
    ids: list[str] = Field(description="the dead letters replayed (the first 1000)")
    ids_truncated: bool
    skipped: dict[str, str] = Field(description="dead letters not replayed and why (the first 1000)")
    event_id: str | None = Field(description="the platform.dead_letters.replayed event recording the replay")


def reader(runtime: Runtime) -> DeadLetterReader:
    settings = runtime.settings
    return DeadLetterReader(
        settings.kafka, topic=settings.dead_letter_topic, client_id=f"{settings.service}-dlq-reader"
    )


@router.get(
    "",
    summary="List dead letters with their reasons, in (partition, offset) order",
    openapi_extra=cross_project("every project: the token needs scope *"),
)
async def list_dead_letters(runtime: CurrentRuntime, principal: Reader, q: Annotated[PageQuery, Query()]) -> Page:
    async with reader(runtime) as letters:
        items = [Summary.of(letter) async for letter in letters.scan(q.selection(), after=q.cursor, limit=q.limit)]
    return Page(items=items, next_cursor=items[-1].id if len(items) == q.limit else None)


@router.get(
    "/{letter_id:letter_id}",
    summary="One dead letter with its headers and a bounded preview of its value",
    openapi_extra=cross_project("every project: the token needs scope *"),
)
async def show_dead_letter(
    runtime: CurrentRuntime,
    principal: Reader,
    letter_id: Annotated[str, Path(pattern=ID_PATTERN, description="<partition>-<offset>")],
    preview_bytes: Annotated[int, Query(ge=0, le=65536)] = 4096,
) -> Detail:
    async with reader(runtime) as letters:
        letter = await letters.get(letter_id)
    if letter is None:
        raise Problem(404, f"the dead-letter topic holds no record {letter_id}")
    return Detail.of_letter(letter, preview_bytes)


@router.post(
    "/replay",
    summary="Publish dead letters again to their original topics, marked as replays",
    openapi_extra=cross_project("every project: the token needs scope *"),
    responses=problems(404),
)
async def replay_dead_letters(
    request: Request, runtime: CurrentRuntime, principal: Replayer, body: ReplayRequest
) -> Replayed:
    try:
        report = await replay_selected(runtime, body)
    except ReplayFailed as failed:
        # What Kafka acknowledged before the failure was replayed: the audit log must still show it.
        done = failed.report
        event_id = await record(runtime, request, principal, body, done) if done.count and not body.dry_run else None
        raise Problem(
            503, f"{failed}; the replayed ones are recorded", replayed=done.count, event_id=event_id
        ) from failed
    event_id = None if body.dry_run or not report.count else await record(runtime, request, principal, body, report)
    return Replayed(
        dry_run=report.dry_run,
        count=report.count,
        topics=dict(report.topics),
        ids=report.ids[:MAX_REPLAYED_IDS],
        ids_truncated=report.count > MAX_REPLAYED_IDS,
        skipped=dict(islice(report.skipped.items(), MAX_REPLAYED_IDS)),
        event_id=event_id,
    )


async def replay_selected(runtime: Runtime, body: ReplayRequest) -> ReplayReport:
    """Replay what ``body`` selects; ids that the topic does not hold refuse the whole request (404)."""
    options: dict[str, Any] = {"settings": runtime.settings.kafka, "dry_run": body.dry_run}
    async with reader(runtime) as letters:
        if body.ids is not None:
            found = {letter_id: await letters.get(letter_id) for letter_id in dict.fromkeys(body.ids)}
            missing = [letter_id for letter_id, letter in found.items() if letter is None]
            if missing:
                raise Problem(404, f"the dead-letter topic holds no record {', '.join(missing[:20])}", missing=missing)
            chosen = [letter for letter in found.values() if letter is not None]
            return await replay(chosen, existing_topics=letters.topics, **options)
        selection = body.filter.selection() if body.filter is not None else Selection()
        return await replay(letters.scan(selection), existing_topics=letters.topics, **options)


async def record(
    runtime: Runtime, request: Request, principal: Principal, body: ReplayRequest, report: ReplayReport
) -> str:
    """Write the replay's event to the outbox (its own transaction: the replay itself is not in Postgres)."""
    criteria = body.filter.model_dump() if body.filter is not None else {}
    payload = DeadLettersReplayed(
        count=report.count,
        topics=dict(report.topics),
        ids=tuple(report.ids[:MAX_REPLAYED_IDS]),
        ids_truncated=report.count > MAX_REPLAYED_IDS,
        skipped=len(report.skipped),
        selector=body.selector,
        reason=criteria.get("reason"),
        consumer=criteria.get("consumer"),
        original_topic=criteria.get("topic"),
        from_time=criteria.get("from_time"),
        to_time=criteria.get("to_time"),
    )
    event = runtime.event(
        payload, subject=runtime.settings.dead_letter_topic, actor=actor_of(request, principal), project=None
    )
    async with runtime.db.transaction() as session:
        await add_to_outbox(session, event)
    return event.id
