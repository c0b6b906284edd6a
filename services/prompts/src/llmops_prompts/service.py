"""The prompts service's use cases. Errors are :class:`llmops.errors.Problem` (403s are its ``Forbidden``), answered
by the edge as RFC 9457 documents."""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Forbidden, Problem
from llmops.prompts import (
    RENDER_SECONDS,
    Expectation,
    PromptTemplate,
    RenderError,
    as_text,
    failed_expectations,
    render,
)
from llmops.runtime import Actor, Runtime
from llmops.tokens import Principal, Role
from llmops_prompts import repository
from llmops_schemas.events import PromptCreated, PromptLabelMoved, PromptVersionCreated


def version_hash(template: PromptTemplate, parameters: dict[str, Any]) -> str:
    document = {"template": template.model_dump(mode="json"), "parameters": parameters}
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def template_of(version: Row) -> PromptTemplate:
    return PromptTemplate.model_validate(version.template)


# -- prompts and versions ----------------------------------------------------------------------------------------
async def create_prompt(
    session: AsyncSession, runtime: Runtime, *, project: str, name: str, description: str, actor: Actor
) -> Row:
    if await repository.find_prompt(session, project, name) is not None:
        raise Problem(409, f"a prompt named {name!r} already exists in project {project!r}")
    prompt_id = str(uuid.uuid4())
    await repository.insert_prompt(
        session,
        {"id": prompt_id, "project": project, "name": name, "description": description, "created_by": actor.subject},
    )
    payload = PromptCreated(prompt_id=prompt_id, project=project, name=name, description=description)
    await add_to_outbox(session, runtime.event(payload, subject=prompt_id, actor=actor, project=project))
    return await repository.find_prompt(session, project, name)


async def get_prompt(session: AsyncSession, project: str, name: str) -> Row:
    prompt = await repository.find_prompt(session, project, name)
    if prompt is None:
        raise Problem(404, f"no prompt named {name!r} in project {project!r}")
    return prompt


async def commit_version(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    template: PromptTemplate,
    parameters: dict[str, Any],
    message: str,
    actor: Actor,
) -> tuple[Row, bool]:
    """A new immutable version, or the latest one when nothing changed (created False)."""
    prompt = await get_prompt(session, project, name)
    await repository.lock_prompt(session, prompt.id, "versions")
    digest = version_hash(template, parameters)
    latest = await repository.latest_version(session, prompt.id)
    if latest is not None and latest.hash == digest:
        return latest, False
    number = (latest.version if latest else 0) + 1
    version_id = str(uuid.uuid4())
    template_json = template.model_dump(mode="json")
    await repository.insert_version(
        session,
        {
            "id": version_id,
            "prompt_id": prompt.id,
            "version": number,
            "template": template_json,
            "parameters": parameters,
            "hash": digest,
            "message": message,
            "author": actor.subject,
        },
    )
    payload = PromptVersionCreated(
        prompt_id=prompt.id,
        version_id=version_id,
        version=number,
        project=project,
        name=name,
        template=template_json,
        parameters=parameters,
        hash=digest,
        message=message,
    )
    await add_to_outbox(session, runtime.event(payload, subject=prompt.id, actor=actor, project=project))
    return await repository.find_version(session, prompt.id, number), True


async def get_version(session: AsyncSession, prompt: Row, version: int) -> Row:
    found = await repository.find_version(session, prompt.id, version)
    if found is None:
        raise Problem(404, f"prompt {prompt.name!r} has no version {version}")
    return found


async def resolve(session: AsyncSession, prompt: Row, *, label: str | None, version: int | None) -> Row:
    """The version a label points at, or a version by number, or the latest version."""
    if label is not None and version is not None:
        raise Problem(
            422,
            "invalid input: label",
            errors=[{"field": "label", "location": "query", "message": "give a label or a version, not both"}],
        )
    if label is not None:
        found = await repository.find_label(session, prompt.id, label)
        if found is None:
            raise Problem(404, f"prompt {prompt.name!r} has no label {label!r}")
        return await get_version(session, prompt, found.version)
    if version is not None:
        return await get_version(session, prompt, version)
    latest = await repository.latest_version(session, prompt.id)
    if latest is None:
        raise Problem(404, f"prompt {prompt.name!r} has no version yet")
    return latest


def diff(old: Row, new: Row) -> dict[str, Any]:
    """A unified diff of the templates' sources and the changed variables and parameters."""

    def lines(version: Row) -> list[str]:
        template = template_of(version)
        if template.text is not None:
            return template.text.splitlines(keepends=True)
        result = []
        for message in template.messages or ():
            result.append(f"[{message.role}]\n")
            result += [line if line.endswith("\n") else line + "\n" for line in message.content.splitlines()]
        return result

    text = "".join(difflib.unified_diff(lines(old), lines(new), f"v{old.version}", f"v{new.version}"))

    def changed(a: dict, b: dict) -> dict[str, Any]:
        return {k: {"from": a.get(k), "to": b.get(k)} for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}

    return {
        "from_version": old.version,
        "to_version": new.version,
        "template": text,
        "variables": changed(old.template.get("variables", {}), new.template.get("variables", {})),
        "parameters": changed(old.parameters, new.parameters),
    }


# -- rendering and tests -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """How long one render, and one run of a prompt's tests, may take. Both run in a worker thread, so the event
    loop (every other request, /readyz included) goes on meanwhile; the renderer stops itself at its budget, and
    the wait for the thread is bounded too, in case something the budget does not see runs long."""

    render_seconds: float = RENDER_SECONDS
    test_run_seconds: float = 10.0
    grace_seconds: float = 1.0


def _template_problem(message: str) -> Problem:
    return Problem(422, message, type_="urn:llmops:problem:template")


async def _bounded(seconds: float, what: str, fn, *args, **kwargs):
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), seconds)
    except TimeoutError:
        raise _template_problem(f"{what} took longer than its time limit ({seconds:g} s)") from None


async def render_version(version: Row, variables: dict[str, Any], limits: Limits):
    """Render off the event loop, within ``limits.render_seconds``; a bad render is a 422 naming what is wrong."""
    seconds = limits.render_seconds
    return await _bounded(seconds + limits.grace_seconds, "the render", _render_version, version, variables, seconds)


def _render_version(version: Row, variables: dict[str, Any], seconds: float):
    try:
        return render(template_of(version), variables, seconds=seconds)
    except RenderError as exc:
        if exc.errors:
            raise Problem(
                422,
                f"invalid input: {', '.join(e.variable for e in exc.errors)}",
                type_="urn:llmops:problem:variables",
                errors=[
                    {"field": f"variables.{e.variable}", "location": "body", "message": e.message} for e in exc.errors
                ],
            ) from exc
        raise _template_problem(str(exc)) from exc


async def run_tests(version: Row, cases: list[Row], limits: Limits) -> list[dict[str, Any]]:
    """Each test case rendered with ``version`` and checked against its expectations, off the event loop and
    within ``limits.test_run_seconds`` in all (cases left when the time is up fail as not run)."""
    seconds = limits.test_run_seconds
    return await _bounded(seconds + limits.grace_seconds, "the test run", _run_tests, version, cases, limits)


def _run_tests(version: Row, cases: list[Row], limits: Limits) -> list[dict[str, Any]]:
    template = template_of(version)
    deadline = time.monotonic() + limits.test_run_seconds
    results = []
    for case in cases:
        left = deadline - time.monotonic()
        if left <= 0:
            failures = [f"not run: the test run's time limit ({limits.test_run_seconds:g} s) was reached"]
        else:
            try:
                rendered = render(template, case.variables, seconds=min(limits.render_seconds, left))
                failures = failed_expectations(as_text(rendered), Expectation.model_validate(case.expect))
            except RenderError as exc:
                failures = [f"render: {exc}"]
            except ValidationError as exc:  # a case stored before today's rules
                failures = [f"expect: {exc.errors()[0]['msg']}"]
        results.append({"test": case.name, "passed": not failures, "failures": failures})
    return results


async def add_test_case(
    session: AsyncSession, prompt: Row, *, name: str, variables: dict[str, Any], expect: Expectation, actor: Actor
) -> Row:
    if await repository.find_test_case(session, prompt.id, name) is not None:
        raise Problem(409, f"prompt {prompt.name!r} already has a test named {name!r}")
    await repository.insert_test_case(
        session,
        {
            "id": str(uuid.uuid4()),
            "prompt_id": prompt.id,
            "name": name,
            "variables": variables,
            "expect": expect.model_dump(exclude_none=True),
            "created_by": actor.subject,
        },
    )
    return await repository.find_test_case(session, prompt.id, name)


# -- labels ------------------------------------------------------------------------------------------------------
def may_guard(principal: Principal, guard_role: Role | None) -> bool:
    return Role.ADMIN in principal.roles or (guard_role is not None and guard_role in principal.roles)


async def move_label(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    *,
    prompt: Row,
    label: str,
    version: int,
    reason: str,
    protected: bool | None,
    guard_role: Role | None,
    actor: Actor,
    limits: Limits,
) -> Row:
    """Point ``label`` at ``version`` and append the move to its history. A protected label (or (un)protecting one)
    needs admin or the guard role (403, recorded), and its render tests must pass on the target version."""
    await repository.lock_prompt(session, prompt.id, f"label:{label}")  # concurrent moves queue; none is lost
    target = await get_version(session, prompt, version)
    current = await repository.find_label(session, prompt.id, label)
    was_protected = bool(current and current.protected)
    will_protect = was_protected if protected is None else protected
    if (was_protected or will_protect != was_protected) and not may_guard(principal, guard_role):
        who = "admin" + (f" or {guard_role.value}" if guard_role else "")
        raise Forbidden("protected_label", f"label {label!r} is protected: only {who} may move or (un)protect it")
    if will_protect:
        cases = await repository.list_test_cases(session, prompt.id)
        failures = [r for r in await run_tests(target, cases, limits) if not r["passed"]]
        if failures:
            raise Problem(
                409,
                f"the render tests fail on version {version}; the protected label {label!r} was not moved",
                type_="urn:llmops:problem:tests-failed",
                failures=failures,
            )
    await repository.set_label(
        session, prompt.id, label, version_id=target.id, protected=will_protect, by=actor.subject
    )
    move = await repository.record_move(
        session,
        {
            "prompt_id": prompt.id,
            "label": label,
            "from_version": current.version if current else None,
            "to_version": version,
            "protected": will_protect,
            "moved_by": actor.subject,
            "reason": reason,
        },
    )
    payload = PromptLabelMoved(
        prompt_id=prompt.id,
        project=prompt.project,
        name=prompt.name,
        label=label,
        from_version=move.from_version,
        to_version=version,
        reason=reason,
        protected=will_protect,
    )
    await add_to_outbox(session, runtime.event(payload, subject=prompt.id, actor=actor, project=prompt.project))
    return move
