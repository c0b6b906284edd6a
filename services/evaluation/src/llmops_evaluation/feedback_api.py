"""HTTP routes of human feedback: give one (counted once, however often it is retried), list and summarise them per
model version, and export corrections as a dataset version (through the datasets service's import)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, Field

from llmops.auth import Permission, ProjectScope, Role, in_project
from llmops.http import CurrentRuntime, Session, from_row
from llmops.openapi import problems
from llmops.types import Offset, RequestBody, Timestamp
from llmops_evaluation import feedback, queries
from llmops_evaluation.api import Reader, SettingsDep, Writer
from llmops_evaluation.spec import NAME
from llmops_schemas.events.feedback import MAX_TEXT

router = APIRouter(prefix="/projects/{project}/evaluation", tags=["evaluation"])

#: Giving feedback: whoever works on or looks at the project's models.
FEEDBACK = Permission("evaluation.feedback", {Role.ML_ENGINEER, Role.VIEWER, Role.DATA_STEWARD})
FeedbackGiver = Annotated[ProjectScope, Depends(in_project(FEEDBACK))]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, description="a retry with the same key counts once"),
]
FeedbackAbout = Annotated[str | None, Query(min_length=1, max_length=256)]


class FeedbackIn(RequestBody):
    """A feedback given through the API: ``feedback.submitted``'s fields but the project (the path's). ``id`` (a
    UUID) or the ``Idempotency-Key`` header makes a retried request count once."""

    id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
    rating: int | None = Field(default=None, ge=1, le=5, description="1 (bad) to 5 (good)")
    thumb: Literal["up", "down"] | None = None
    correction: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    comment: str | None = Field(default=None, max_length=MAX_TEXT)
    inference_id: str | None = Field(default=None, min_length=1, max_length=256)
    model_version_id: str | None = Field(default=None, min_length=1, max_length=256)
    run_id: str | None = Field(default=None, min_length=1, max_length=256)
    example_index: int | None = Field(default=None, ge=0, le=2**31 - 1)
    input: str | None = Field(default=None, max_length=MAX_TEXT)
    output: str | None = Field(default=None, max_length=MAX_TEXT)
    source: str | None = Field(default=None, max_length=256)


class ExportIn(RequestBody):
    """Which corrections to export, and the dataset whose next version they become."""

    dataset: str = Field(pattern=NAME, description="the dataset (created when new, as instruction)")
    model_version_id: str | None = Field(default=None, min_length=1, max_length=256)
    run_id: str | None = Field(default=None, min_length=1, max_length=256)
    since: Timestamp | None = Field(default=None, description="only feedback submitted at or after this time")


class FeedbackOut(BaseModel):
    id: str
    project: str
    rating: int | None
    thumb: str | None
    correction: str | None
    comment: str | None
    inference_id: str | None
    model_version_id: str | None
    run_id: str | None
    example_index: int | None
    input: str | None
    output: str | None
    source: str | None
    actor: str | None
    submitted_at: datetime
    received_at: datetime


class IntervalOut(BaseModel):
    """A mean with its bootstrap 95% interval over ``n`` values (None when there is none)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int


class FeedbackSummaryOut(BaseModel):
    model_version_id: str | None
    count: int
    rating: IntervalOut
    thumbs_up: int
    thumbs_down: int
    share_up: IntervalOut = Field(description="the share of thumbs that are up")
    corrections: int


class ExportOut(BaseModel):
    import_id: str
    rows: int
    sha256: str
    uri: str
    skipped: int = Field(description="corrections left out for want of an input")


@router.post(
    "/feedback",
    status_code=201,
    summary="Give feedback (rating, thumb, correction) on an inference, a model version or a run's example",
    responses={200: {"description": "the same feedback (id or Idempotency-Key) was recorded before"}} | problems(409),
)
async def give_feedback(
    body: FeedbackIn,
    response: Response,
    session: Session,
    runtime: CurrentRuntime,
    scope: FeedbackGiver,
    idempotency_key: IdempotencyKey = None,
) -> FeedbackOut:
    row, created = await feedback.give_feedback(
        session,
        runtime,
        project=scope.project,
        fields=body.model_dump(exclude={"id"}),
        actor=scope.actor,
        feedback_id=body.id,
        idempotency_key=idempotency_key,
    )
    if not created:
        response.status_code = 200  # a retry: nothing new was recorded
    return from_row(FeedbackOut, row)


@router.get("/feedback", summary="The project's feedback, newest first")
async def list_feedback(
    session: Session,
    scope: Reader,
    model_version_id: FeedbackAbout = None,
    run_id: FeedbackAbout = None,
    has_correction: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> list[FeedbackOut]:
    rows = await queries.list_feedback(
        session,
        scope.project,
        model_version_id=model_version_id,
        run_id=run_id,
        has_correction=has_correction,
        limit=limit,
        offset=offset,
    )
    return [from_row(FeedbackOut, r) for r in rows]


@router.get("/feedback/summary", summary="Feedback per model version: counts, mean rating, share of thumbs up (95%)")
async def feedback_summary(
    session: Session, scope: Reader, settings: SettingsDep, model_version_id: FeedbackAbout = None
) -> list[FeedbackSummaryOut]:
    items = await feedback.summary(session, scope.project, model_version_id, resamples=settings.bootstrap_resamples)
    return [FeedbackSummaryOut.model_validate(item) for item in items]


@router.post(
    "/feedback/export",
    status_code=202,
    summary="Export corrections as a dataset's next version (instruction JSONL; the datasets service imports it)",
)
async def export_feedback(body: ExportIn, session: Session, runtime: CurrentRuntime, scope: Writer) -> ExportOut:
    export = await feedback.export_corrections(
        session,
        runtime,
        project=scope.project,
        dataset=body.dataset,
        actor=scope.actor,
        model_version_id=body.model_version_id,
        run_id=body.run_id,
        since=body.since,
    )
    return ExportOut.model_validate(export, from_attributes=True)
