"""HTTP routes of the prompts service. ml-engineers (and admins) write; viewers read; project scopes everywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from llmops.auth import Permission, ProjectScope, Role, in_project
from llmops.http import CurrentRuntime, Session, from_row, get_settings
from llmops.prompts import Expectation, PromptTemplate
from llmops.types import INT32_MAX, Offset, RequestBody, Version, VersionPath, VersionQuery
from llmops_prompts import queries, service
from llmops_prompts.service import Limits
from llmops_prompts.settings import PromptsSettings

WRITE = Permission("prompts.write", {Role.ML_ENGINEER})
READ = Permission("prompts.read", {Role.ML_ENGINEER, Role.VIEWER})

router = APIRouter(prefix="/projects/{project}/prompts", tags=["prompts"])
Writer = Annotated[ProjectScope, Depends(in_project(WRITE))]
Reader = Annotated[ProjectScope, Depends(in_project(READ))]
SettingsDep = Annotated[PromptsSettings, Depends(get_settings)]
NAME = r"^[a-z0-9][a-z0-9._-]{0,127}$"
Name = Annotated[str, PathParam(pattern=NAME)]
LabelName = Annotated[str, PathParam(pattern=NAME)]


def _limits(request: Request) -> Limits:
    return request.app.state.limits


LimitsDep = Annotated[Limits, Depends(_limits)]


class PromptIn(RequestBody):
    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=4000)


class Parameters(RequestBody):
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: list[str] | None = Field(default=None, max_length=16)
    top_p: float | None = Field(default=None, gt=0, le=1)


class VersionIn(RequestBody):
    template: PromptTemplate
    parameters: Parameters = Field(default_factory=Parameters)
    message: str = Field(min_length=1, max_length=2000, description="what changed and why")


class VersionOut(BaseModel):
    id: str
    version: int
    template: dict[str, Any]
    parameters: dict[str, Any]
    hash: str
    message: str
    author: str
    created_at: datetime


class LabelOut(BaseModel):
    name: str
    version: int
    protected: bool
    updated_by: str
    updated_at: datetime


class PromptOut(BaseModel):
    id: str
    project: str
    name: str
    description: str
    created_by: str
    created_at: datetime


class PromptDetail(PromptOut):
    versions: list[VersionOut]
    labels: list[LabelOut]


class LabelMoveIn(RequestBody):
    version: Version
    reason: str = Field(min_length=1, max_length=2000)
    protected: bool | None = Field(default=None, description="protect or unprotect the label (admin only)")


class MoveOut(BaseModel):
    label: str
    from_version: int | None
    to_version: int
    protected: bool
    moved_by: str
    reason: str
    moved_at: datetime


class RenderIn(RequestBody):
    label: str | None = Field(default=None, pattern=NAME)
    version: Version | None = None
    variables: dict[str, Any] = Field(default_factory=dict)


class TestCaseIn(RequestBody):
    name: str = Field(pattern=NAME)
    variables: dict[str, Any]
    expect: Expectation


@router.post("", status_code=201, summary="Create a prompt")
async def create_prompt(body: PromptIn, session: Session, runtime: CurrentRuntime, scope: Writer) -> PromptOut:
    row = await service.create_prompt(
        session,
        runtime,
        project=scope.project,
        name=body.name,
        description=body.description,
        actor=scope.actor,
    )
    return from_row(PromptOut, row)


@router.get("", summary="The project's prompts")
async def list_prompts(
    session: Session,
    scope: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> list[PromptOut]:
    return [
        from_row(PromptOut, r) for r in await queries.list_prompts(session, scope.project, limit=limit, offset=offset)
    ]


@router.get("/{name}", summary="A prompt, its versions and labels")
async def show_prompt(name: Name, session: Session, scope: Reader) -> PromptDetail:
    prompt = await service.get_prompt(session, scope.project, name)
    versions = [from_row(VersionOut, v) for v in await queries.versions(session, scope.project, name)]
    labels = [from_row(LabelOut, label) for label in await queries.labels_of(session, scope.project, name)]
    return PromptDetail(**from_row(PromptOut, prompt).model_dump(), versions=versions, labels=labels)


@router.post(
    "/{name}/versions",
    status_code=201,
    summary="Commit an immutable version",
    responses={200: {"model": VersionOut, "description": "Nothing changed since the latest version: that version"}},
)
async def commit_version(
    name: Name,
    body: VersionIn,
    response: Response,
    session: Session,
    runtime: CurrentRuntime,
    scope: Writer,
) -> VersionOut:
    version, created = await service.commit_version(
        session,
        runtime,
        project=scope.project,
        name=name,
        template=body.template,
        parameters=body.parameters.model_dump(exclude_none=True),
        message=body.message,
        actor=scope.actor,
    )
    if not created:
        response.status_code = 200  # nothing changed since the latest version
    return from_row(VersionOut, version)


@router.get(
    "/{name}/resolve",
    summary="The version a label points at (or a version, or the latest), with an ETag",
    responses={304: {"description": "Not modified: `If-None-Match` holds the current ETag"}},
)
async def resolve(
    name: Name,
    request: Request,
    response: Response,
    session: Session,
    scope: Reader,
    label: Annotated[str | None, Query(pattern=NAME)] = None,
    version: VersionQuery = None,
) -> VersionOut | None:
    prompt = await service.get_prompt(session, scope.project, name)
    found = await service.resolve(session, prompt, label=label, version=version)
    etag = f'"v{found.version}-{found.hash[:32]}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"etag": etag})
    response.headers["etag"] = etag
    return from_row(VersionOut, found)


@router.get("/{name}/versions/{version}", summary="One version")
async def show_version(name: Name, version: VersionPath, session: Session, scope: Reader) -> VersionOut:
    prompt = await service.get_prompt(session, scope.project, name)
    return from_row(VersionOut, await service.get_version(session, prompt, version))


@router.get("/{name}/diff", summary="Template, variables and parameters changed between two versions")
async def diff(
    name: Name,
    session: Session,
    scope: Reader,
    from_version: Annotated[int, Query(alias="from", ge=1, le=INT32_MAX)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=INT32_MAX)],
) -> dict[str, Any]:
    prompt = await service.get_prompt(session, scope.project, name)
    return service.diff(
        await service.get_version(session, prompt, from_version), await service.get_version(session, prompt, to_version)
    )


@router.put("/{name}/labels/{label}", summary="Move a label to a version (protected labels: admin, tests first)")
async def move_label(
    name: Name,
    label: LabelName,
    body: LabelMoveIn,
    session: Session,
    runtime: CurrentRuntime,
    scope: Writer,
    limits: LimitsDep,
    settings: SettingsDep,
) -> MoveOut:
    prompt = await service.get_prompt(session, scope.project, name)
    move = await service.move_label(
        session,
        runtime,
        scope.principal,
        prompt=prompt,
        label=label,
        version=body.version,
        reason=body.reason,
        protected=body.protected,
        guard_role=settings.protected_label_role,
        actor=scope.actor,
        limits=limits,
    )
    return from_row(MoveOut, move)


@router.get("/{name}/labels/{label}/history", summary="Every move of a label: who, when, from, to, why")
async def label_history(name: Name, label: LabelName, session: Session, scope: Reader) -> list[MoveOut]:
    await service.get_prompt(session, scope.project, name)  # 404 for an unknown prompt
    return [from_row(MoveOut, m) for m in await queries.label_history(session, scope.project, name, label)]


@router.post(
    "/{name}/render",
    summary="Render by label or version with variables (422 names each bad variable, or the render limit reached)",
)
async def render(name: Name, body: RenderIn, session: Session, scope: Reader, limits: LimitsDep) -> dict[str, Any]:
    prompt = await service.get_prompt(session, scope.project, name)
    version = await service.resolve(session, prompt, label=body.label, version=body.version)
    rendered = await service.render_version(version, body.variables, limits)
    return {
        "version": version.version,
        "parameters": version.parameters,
        ("text" if isinstance(rendered, str) else "messages"): rendered,
    }


@router.post("/{name}/tests", status_code=201, summary="Add a test case (variables and expectations)")
async def add_test(name: Name, body: TestCaseIn, session: Session, scope: Writer) -> dict[str, Any]:
    prompt = await service.get_prompt(session, scope.project, name)
    case = await service.add_test_case(
        session,
        prompt,
        name=body.name,
        variables=body.variables,
        expect=body.expect,
        actor=scope.actor,
    )
    return {"name": case.name, "variables": case.variables, "expect": case.expect}


@router.get("/{name}/tests", summary="The prompt's test cases")
async def list_tests(name: Name, session: Session, scope: Reader) -> list[dict[str, Any]]:
    await service.get_prompt(session, scope.project, name)  # 404 for an unknown prompt
    return [
        {"name": c.name, "variables": c.variables, "expect": c.expect}
        for c in await queries.test_cases_of(session, scope.project, name)
    ]


@router.post("/{name}/tests/run", summary="Run the test cases against a version or label (default latest)")
async def run_tests(
    name: Name,
    session: Session,
    scope: Reader,
    limits: LimitsDep,
    label: Annotated[str | None, Query(pattern=NAME)] = None,
    version: VersionQuery = None,
) -> dict[str, Any]:
    prompt = await service.get_prompt(session, scope.project, name)
    target = await service.resolve(session, prompt, label=label, version=version)
    cases = await queries.test_cases_of(session, scope.project, name)
    results = await service.run_tests(target, cases, limits)
    return {"version": target.version, "passed": all(r["passed"] for r in results), "results": results}
