"""The release gate a deployment passes: every evaluation suite attached to the model's name (its newest version, as
the suites projection holds it) needs a passed decision on the model version being deployed. Of a suite's decisions
on that version the newest counts, with the newest override an admin recorded for it in the evaluation service. A
model no suite is attached to passes with no checks."""

from __future__ import annotations

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.errors import Problem
from llmops_deployment import repository
from llmops_schemas.events.deployments import GateCheck


async def check(session: AsyncSession, project: str, model_name: str, model_version_id: str) -> list[GateCheck]:
    """One check per attached suite, by suite name."""
    return [_check_of(row) for row in await repository.gates_of(session, project, model_name, model_version_id)]


def _check_of(row: Row) -> GateCheck:
    if row.decision_id is None:
        return GateCheck(suite=row.name, suite_version=row.version, passed=None)
    overridden = row.override_id is not None
    return GateCheck(
        suite=row.name,
        suite_version=row.decision_suite_version,
        decision_id=row.decision_id,
        run_id=row.run_id,
        passed=row.override_passed if overridden else row.passed,
        overridden_by=row.override_id,
    )


def blocking(checks: list[GateCheck]) -> list[GateCheck]:
    """The checks that keep a deployment back: no decision yet, or a failed one."""
    return [c for c in checks if c.passed is not True]


def refused(model: str, checks: list[GateCheck]) -> Problem:
    """The 409 answered for a version whose gates are missing or failed, naming each such suite."""
    missing = [c.suite for c in checks if c.passed is None]
    failed = [c.suite for c in checks if c.passed is False]
    parts = [f"failed: {', '.join(failed)}"] if failed else []
    parts += [f"no decision yet: {', '.join(missing)}"] if missing else []
    return Problem(
        409,
        f"{model} has not passed the gates of its evaluation suites ({'; '.join(parts)}); an admin may deploy it "
        "anyway with an override_reason",
        type_="urn:llmops:problem:gate-not-passed",
        failed=failed,
        missing=missing,
        gates=[c.model_dump(mode="json") for c in checks],
    )
