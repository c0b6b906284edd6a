"""HTTP routes of the evaluation service: suites, runs, comparisons, gate decisions and overrides (feedback's are
:mod:`llmops_evaluation.feedback_api`'s).

ml-engineers (and admins) write suites and request runs; viewers read; only admins override a gate; anyone who may
read a project may give feedback on it. Every route is scoped to a project the caller's token names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from llmops.auth import Permission, ProjectScope, Role, in_project
from llmops.http import CurrentRuntime, Session, from_row, get_settings
from llmops.openapi import problems
from llmops.types import UUID_PATTERN, Offset, RequestBody, UUIDPath, VersionPath, VersionQuery
from llmops_evaluation import gating, queries, service, suites
from llmops_evaluation.settings import EvaluationSettings
from llmops_evaluation.spec import NAME, RunIn, SuiteIn

WRITE = Permission("evaluation.write", {Role.ML_ENGINEER})
READ = Permission("evaluation.read", {Role.ML_ENGINEER, Role.VIEWER})
#: Recording another outcome for a gate decision: admins only.
OVERRIDE = Permission("evaluation.gate.override", set())

router = APIRouter(prefix="/projects/{project}/evaluation", tags=["evaluation"])
Writer = Annotated[ProjectScope, Depends(in_project(WRITE))]
Reader = Annotated[ProjectScope, Depends(in_project(READ))]
Overrider = Annotated[ProjectScope, Depends(in_project(OVERRIDE))]
SettingsDep = Annotated[EvaluationSettings, Depends(get_settings)]
Name = Annotated[str, PathParam(pattern=NAME)]


class SuiteOut(BaseModel):
    id: str
    suite_id: str
    project: str
    name: str
    version: int
    spec: dict[str, Any]
    models: list[str]
    triggers: list[str]
    created_by: str
    created_at: datetime


class RunOut(BaseModel):
    id: str
    project: str
    suite_version_id: str
    status: str
    pool: str
    target: dict[str, Any]
    trigger: str
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    attempt: int
    examples_total: int | None
    examples_done: int
    progress: dict[str, Any] | None
    metrics: dict[str, Any] | None
    signatures: dict[str, Any] | None
    artifact_uri: str | None
    artifact_sha256: str | None
    error: str | None


# -- suites ------------------------------------------------------------------------------------------------------
@router.post("/suites", status_code=201, summary="Create a suite, or its next version (suite versions are immutable)")
async def create_suite(
    body: SuiteIn, session: Session, runtime: CurrentRuntime, scope: Writer, settings: SettingsDep
) -> SuiteOut:
    row = await suites.create_suite_version(
        session, runtime, settings, project=scope.project, body=body.model_dump(), actor=scope.actor
    )
    return from_row(SuiteOut, row)


@router.get("/suites", summary="The project's suites, each at its latest version")
async def list_suites(
    session: Session,
    scope: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> list[SuiteOut]:
    return [from_row(SuiteOut, r) for r in await queries.latest_suites(session, scope.project, limit, offset)]


@router.get("/suites/{name}", summary="A suite's latest version", responses=problems(404))
async def show_suite(name: Name, session: Session, scope: Reader) -> SuiteOut:
    return from_row(SuiteOut, await suites.get_suite_version(session, scope.project, name, None))


@router.get("/suites/{name}/versions/{version}", summary="One version of a suite", responses=problems(404))
async def show_suite_version(name: Name, version: VersionPath, session: Session, scope: Reader) -> SuiteOut:
    return from_row(SuiteOut, await suites.get_suite_version(session, scope.project, name, version))


# -- runs --------------------------------------------------------------------------------------------------------
@router.post("/runs", status_code=201, summary="Run a suite on a model version (or alias), a base model or an endpoint")
async def request_run(
    body: RunIn, session: Session, runtime: CurrentRuntime, scope: Writer, settings: SettingsDep
) -> RunOut:
    row = await service.request_run(
        session, runtime, settings, project=scope.project, body=body.model_dump(), actor=scope.actor
    )
    return from_row(RunOut, row)


@router.get("/runs", summary="The project's runs, newest first")
async def list_runs(
    session: Session,
    scope: Reader,
    suite: Annotated[str | None, Query(pattern=NAME)] = None,
    model: Annotated[str | None, Query(pattern=NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> list[RunOut]:
    rows = await queries.list_runs(session, scope.project, suite=suite, model=model, limit=limit, offset=offset)
    return [from_row(RunOut, r) for r in rows]


@router.get("/runs/{run_id}", summary="A run: status, progress, metrics with 95% intervals", responses=problems(404))
async def show_run(run_id: UUIDPath, session: Session, scope: Reader) -> RunOut:
    return from_row(RunOut, await service.get_run(session, scope.project, run_id))


class ExampleOut(BaseModel):
    index: int
    scores: dict[str, float]
    errors: dict[str, Any] | None
    unparseable: dict[str, Any] | None
    latency_ms: float | None


@router.get(
    "/runs/{run_id}/examples",
    summary="A run's per-example scores (outputs are in its artifact)",
    responses=problems(404),
)
async def run_examples(
    run_id: UUIDPath,
    session: Session,
    scope: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[ExampleOut]:
    await service.get_run(session, scope.project, run_id)
    rows = await queries.examples_of(session, scope.project, run_id, limit=limit, offset=offset)
    return [from_row(ExampleOut, r) for r in rows]


# -- comparisons -------------------------------------------------------------------------------------------------
@router.get(
    "/compare",
    summary="Two completed runs of one suite version, example by example, with paired intervals",
    responses=problems(404, 409),
)
async def compare(
    session: Session,
    scope: Reader,
    settings: SettingsDep,
    baseline: Annotated[str, Query(pattern=UUID_PATTERN, description="the run compared against (e.g. production)")],
    candidate: Annotated[str, Query(pattern=UUID_PATTERN, description="the run judged")],
) -> dict[str, Any]:
    return await gating.compare_runs(
        session, scope.project, baseline, candidate, resamples=settings.bootstrap_resamples
    )


# -- gates -------------------------------------------------------------------------------------------------------
class DecisionOut(BaseModel):
    id: str
    run_id: str
    project: str
    suite: str
    suite_version: int
    model_name: str | None
    model_version: int | None
    model_version_id: str | None
    passed: bool
    rules: list[dict[str, Any]]
    decided_at: datetime
    override_id: str | None
    override_passed: bool | None
    override_reason: str | None
    override_actor: str | None
    overridden_at: datetime | None


class OverrideIn(RequestBody):
    passed: bool = Field(description="the outcome the admin records")
    reason: str = Field(min_length=1, max_length=2000)


class OverrideOut(BaseModel):
    id: str
    decision_id: str
    project: str
    passed: bool
    reason: str
    actor: str
    created_at: datetime


@router.get("/gates", summary="Gate decisions, newest first, with their latest override")
async def list_decisions(
    session: Session,
    scope: Reader,
    model: Annotated[str | None, Query(pattern=NAME)] = None,
    version: VersionQuery = None,
    run_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> list[DecisionOut]:
    rows = await queries.decisions(
        session, scope.project, model=model, version=version, run_id=run_id, limit=limit, offset=offset
    )
    return [from_row(DecisionOut, r) for r in rows]


@router.post(
    "/gates/{decision_id}/overrides",
    status_code=201,
    summary="Record another outcome for a gate decision, with a reason (admins only; audited)",
    responses=problems(404),
)
async def override_decision(
    decision_id: UUIDPath, body: OverrideIn, session: Session, runtime: CurrentRuntime, scope: Overrider
) -> OverrideOut:
    row = await gating.override(
        session,
        runtime,
        project=scope.project,
        decision_id=decision_id,
        passed=body.passed,
        reason=body.reason,
        actor=scope.actor,
    )
    return from_row(OverrideOut, row)


@router.get("/gates/{decision_id}/overrides", summary="A decision's overrides, oldest first")
async def list_overrides(decision_id: UUIDPath, session: Session, scope: Reader) -> list[OverrideOut]:
    return [from_row(OverrideOut, r) for r in await queries.overrides_of(session, scope.project, decision_id)]
