"""Routes' use cases: set a route (the ``model`` name applications ask the gateway for), split its traffic, add or
remove a shadow, roll it back to an earlier version; and what a route looks like with its deployments' names.

Each change writes the route's next version, its ``route_versions`` row and ``route.changed`` in one transaction,
under the route's row lock, so concurrent changes of one route take turns and none is lost. The gateway compares
the route's version on every request: a change applies to the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem, unprocessable
from llmops.runtime import Actor, Runtime
from llmops_deployment import access_queries, access_repository
from llmops_schemas.events.deployments import RouteChanged, RouteTarget

#: A route's name: what applications put in ``model`` (no slash: it is a path segment of the API).
ROUTE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: Deployments no route may send traffic to.
UNUSABLE = frozenset({"stopping", "stopped", "failed"})
#: Weights after a split are rounded to this many decimals (they are relative: the sum need not be exact).
WEIGHT_DECIMALS = 6


@dataclass(frozen=True)
class RouteConfig:
    """How a route sends traffic: weighted targets, shadows, fallbacks in order, stickiness."""

    targets: list[dict[str, Any]]  # [{deployment_id, weight}]
    shadows: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    sticky: bool = False

    @classmethod
    def of(cls, row: Row) -> RouteConfig:
        return cls(list(row.targets), list(row.shadows), list(row.fallbacks), bool(row.sticky))

    def values(self) -> dict[str, Any]:
        return asdict(self)


def route_not_found(name: str) -> Problem:
    return Problem(404, f"no route {name!r} in this project")


# -- checks --------------------------------------------------------------------------------------------------------
def _check_shape(config: RouteConfig) -> None:
    if not any(t["weight"] > 0 for t in config.targets):
        raise unprocessable("a route needs at least one target with a weight above 0", "targets")
    target_ids: set[str] = set()
    for i, target in enumerate(config.targets):
        if target["deployment_id"] in target_ids:
            raise unprocessable(f"deployment {target['deployment_id']} is a target twice", f"targets.{i}.deployment_id")
        target_ids.add(target["deployment_id"])
    for kind, ids in (("shadows", config.shadows), ("fallbacks", config.fallbacks)):
        for i, deployment_id in enumerate(ids):
            if deployment_id in ids[:i]:
                raise unprocessable(f"deployment {deployment_id} is in {kind} twice", f"{kind}.{i}")
            if kind == "shadows" and deployment_id in target_ids:
                raise unprocessable(f"deployment {deployment_id} is both a target and a shadow", f"{kind}.{i}")


async def _check_deployments(session: AsyncSession, project: str, named: Sequence[tuple[str, str]]) -> None:
    """Each (field, deployment id) names a deployment of the project that may take traffic, else a 422 naming it."""
    found = await access_queries.deployments_by_id(session, project, (deployment_id for _, deployment_id in named))
    for field_name, deployment_id in named:
        deployment = found.get(deployment_id)
        if deployment is None:
            raise unprocessable(f"no deployment {deployment_id} in this project", field_name)
        if deployment.status in UNUSABLE:
            detail = f"deployment {deployment_id} ({deployment.name}) is {deployment.status}: it cannot take traffic"
            raise unprocessable(detail, field_name)


def _named(config: RouteConfig) -> list[tuple[str, str]]:
    return [
        *((f"targets.{i}.deployment_id", t["deployment_id"]) for i, t in enumerate(config.targets)),
        *((f"shadows.{i}", d) for i, d in enumerate(config.shadows)),
        *((f"fallbacks.{i}", d) for i, d in enumerate(config.fallbacks)),
    ]


def split_weights(targets: list[dict[str, Any]], deployment_id: str, percent: float) -> list[dict[str, Any]]:
    """``deployment_id`` gets ``percent``% of the traffic (added as a target when it is none yet); the other targets
    share the rest in their current proportions. Raises ValueError when none of them could take the rest."""
    rest = sum(t["weight"] for t in targets if t["deployment_id"] != deployment_id)
    if percent < 100 and rest <= 0:
        raise ValueError(f"no other target of the route takes traffic: none can take the other {100 - percent:g}%")
    split = []
    for target in targets:
        if target["deployment_id"] == deployment_id:
            weight = float(percent)
        else:
            weight = round(target["weight"] / rest * (100 - percent), WEIGHT_DECIMALS) if rest > 0 else 0.0
        split.append({"deployment_id": target["deployment_id"], "weight": weight})
    if all(t["deployment_id"] != deployment_id for t in targets):
        split.append({"deployment_id": deployment_id, "weight": float(percent)})
    return split


# -- writing a version ---------------------------------------------------------------------------------------------
async def _write_version(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    route_id: str,
    version: int,
    config: RouteConfig,
    change: str,
    reason: str,
    actor: Actor,
    restored_version: int | None = None,
) -> None:
    await access_repository.insert_route_version(
        session,
        {
            "route_id": route_id,
            "version": version,
            "change": change,
            "restored_version": restored_version,
            "reason": reason,
            "actor": actor.subject,
            **config.values(),
        },
    )
    payload = RouteChanged(
        route_id=route_id,
        project=project,
        name=name,
        version=version,
        change=change,  # type: ignore[arg-type]
        targets=[RouteTarget(**t) for t in config.targets],
        shadows=config.shadows,
        fallbacks=config.fallbacks,
        sticky=config.sticky,
        restored_version=restored_version,
        reason=reason,
        actor=actor.subject,
    )
    await add_to_outbox(session, runtime.event(payload, subject=route_id, actor=actor, project=project))


async def _next_version(
    session: AsyncSession,
    runtime: Runtime,
    route: Row,
    config: RouteConfig,
    *,
    change: str,
    reason: str,
    actor: Actor,
    restored_version: int | None = None,
) -> Row:
    version = route.version + 1
    await access_repository.update_route(session, route.id, version, config.values(), actor.subject)
    await _write_version(
        session,
        runtime,
        project=route.project,
        name=route.name,
        route_id=route.id,
        version=version,
        config=config,
        change=change,
        reason=reason,
        actor=actor,
        restored_version=restored_version,
    )
    return await _reread(session, route.project, route.name)


async def _reread(session: AsyncSession, project: str, name: str) -> Row:
    route = await access_queries.find_route(session, project, name)
    assert route is not None  # written in this transaction
    return route


async def _locked(session: AsyncSession, project: str, name: str) -> Row:
    route = await access_repository.lock_route(session, project, name)
    if route is None:
        raise route_not_found(name)
    return route


# -- use cases -----------------------------------------------------------------------------------------------------
async def set_route(
    session: AsyncSession, runtime: Runtime, *, project: str, name: str, config: RouteConfig, reason: str, actor: Actor
) -> tuple[Row, bool]:
    """Create the route (version 1) or write its next version; the route, and whether it was created."""
    _check_shape(config)
    await _check_deployments(session, project, _named(config))
    route = await access_repository.lock_route(session, project, name)
    if route is None:
        route_id = await access_repository.create_route(session, project, name, config.values(), actor.subject)
        if route_id is not None:
            await _write_version(
                session,
                runtime,
                project=project,
                name=name,
                route_id=route_id,
                version=1,
                config=config,
                change="set",
                reason=reason,
                actor=actor,
            )
            return await _reread(session, project, name), True
        route = await _locked(session, project, name)  # created concurrently: this becomes its next version
    return await _next_version(session, runtime, route, config, change="set", reason=reason, actor=actor), False


async def split(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    deployment_id: str,
    percent: float,
    reason: str,
    actor: Actor,
) -> Row:
    """Give ``deployment_id`` ``percent``% of the route's traffic; the other targets keep their proportions of the
    rest. A shadow given traffic stops being a shadow (the usual way from shadow to canary)."""
    route = await _locked(session, project, name)
    await _check_deployments(session, project, [("deployment_id", deployment_id)])
    current = RouteConfig.of(route)
    try:
        targets = split_weights(current.targets, deployment_id, percent)
    except ValueError as exc:
        raise unprocessable(str(exc), "percent") from exc
    shadows = [d for d in current.shadows if d != deployment_id]
    config = RouteConfig(targets, shadows, current.fallbacks, current.sticky)
    return await _next_version(session, runtime, route, config, change="split", reason=reason, actor=actor)


async def shadow(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    deployment_id: str,
    enabled: bool,
    reason: str,
    actor: Actor,
) -> Row:
    """Send ``deployment_id`` copies of the route's requests (``enabled``) or stop doing so. Asking for what is
    already so writes no version."""
    route = await _locked(session, project, name)
    current = RouteConfig.of(route)
    if enabled == (deployment_id in current.shadows):
        return route
    if enabled:
        if any(t["deployment_id"] == deployment_id for t in current.targets):
            detail = f"deployment {deployment_id} is a target of the route: it cannot be its shadow too"
            raise unprocessable(detail, "deployment_id")
        await _check_deployments(session, project, [("deployment_id", deployment_id)])
        shadows = [*current.shadows, deployment_id]
    else:
        shadows = [d for d in current.shadows if d != deployment_id]
    config = RouteConfig(current.targets, shadows, current.fallbacks, current.sticky)
    return await _next_version(session, runtime, route, config, change="shadow", reason=reason, actor=actor)


async def rollback(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    to_version: int | None,
    reason: str,
    actor: Actor,
) -> Row:
    """Restore the route as it was at ``to_version`` (default: the version before the current one), as its next
    version."""
    route = await _locked(session, project, name)
    if to_version is None:
        if route.version == 1:
            raise unprocessable("the route has no version before its first", "to_version")
        to_version = route.version - 1
    elif to_version >= route.version:
        raise unprocessable(f"to_version must be before the current version {route.version}", "to_version")
    restored = await access_repository.get_route_version(session, route.id, to_version)
    if restored is None:
        raise unprocessable(f"the route has no version {to_version}", "to_version")
    config = RouteConfig.of(restored)
    # The restored version's deployments must still take traffic: the refusal names the version asked for.
    await _check_deployments(session, project, [("to_version", d) for _, d in _named(config)])
    return await _next_version(
        session, runtime, route, config, change="rollback", reason=reason, actor=actor, restored_version=to_version
    )


# -- reading -------------------------------------------------------------------------------------------------------
async def describe(session: AsyncSession, project: str, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Routes with each deployment's name and status (``missing`` for one no longer known) and each target's share
    of the traffic in percent."""
    ids = {t["deployment_id"] for r in rows for t in r.targets} | {d for r in rows for d in (*r.shadows, *r.fallbacks)}
    found = await access_queries.deployments_by_id(session, project, ids)

    def ref(deployment_id: str) -> dict[str, Any]:
        deployment = found.get(deployment_id)
        return {
            "deployment_id": deployment_id,
            "name": deployment.name if deployment else None,
            "status": deployment.status if deployment else "missing",
        }

    described = []
    for row in rows:
        total = sum(t["weight"] for t in row.targets)
        targets = [
            ref(t["deployment_id"]) | {"weight": t["weight"], "percent": 100 * t["weight"] / total if total else 0.0}
            for t in row.targets
        ]
        described.append(
            {
                "id": row.id,
                "project": row.project,
                "name": row.name,
                "version": row.version,
                "targets": targets,
                "shadows": [ref(d) for d in row.shadows],
                "fallbacks": [ref(d) for d in row.fallbacks],
                "sticky": row.sticky,
                "updated_by": row.updated_by,
                "updated_at": row.updated_at,
            }
        )
    return described


async def get_route(session: AsyncSession, project: str, name: str) -> dict[str, Any]:
    route = await access_queries.find_route(session, project, name)
    if route is None:
        raise route_not_found(name)
    [described] = await describe(session, project, [route])
    return described


async def history(session: AsyncSession, project: str, name: str, *, limit: int, offset: int) -> Sequence[Row]:
    route = await access_queries.find_route(session, project, name)
    if route is None:
        raise route_not_found(name)
    return await access_queries.route_history(session, route.id, limit, offset)
