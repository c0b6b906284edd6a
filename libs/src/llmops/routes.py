"""The route walk: every API route of a service, the permission it declares and how it keeps to the caller's
projects, so a test can refuse a route that forgot either (``tests/test_routes.py``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from llmops.auth import PROJECT_SCOPE


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of ``app``, those of included routers too (FastAPI includes them as wrappers)."""
    found: list[APIRoute] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        if isinstance(route, APIRoute):
            found.append(route)
        elif (router := getattr(route, "original_router", None)) is not None:
            pending.extend(router.routes)
    return found


def route_permission(route: APIRoute):
    """The permission a route's dependencies declare (``llmops.auth.requires`` or ``in_project``), or None."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop(0)
        permission = getattr(dependency.call, "permission", None)
        if permission is not None:
            return permission
        pending.extend(dependency.dependencies)
    return None


def scopes_path_project(route: APIRoute) -> bool:
    """Whether one of a route's dependencies is ``llmops.auth.in_project`` (the caller checked for ``{project}``)."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop(0)
        if getattr(dependency.call, "scopes_path_project", False):
            return True
        pending.extend(dependency.dependencies)
    return False


#: The routes every service has that need no token (probes and metrics; see the module docstring).
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def route_table(app: FastAPI) -> list[tuple[str, str, str | None, str | None]]:
    """(methods, path, permission, project scope) of every API route: the scope is "path" for a route under
    ``{project}`` that depends on ``in_project``, the route's declared ``x-project-scope`` (``cross_project``), or
    None. A ``{project}`` route has no other scope: declaring one does not excuse it from the check."""
    rows = []
    for route in api_routes(app):
        permission = route_permission(route)
        if "{project}" in route.path:
            scope = "path" if scopes_path_project(route) else None
        else:
            scope = (route.openapi_extra or {}).get(PROJECT_SCOPE)
        rows.append((",".join(sorted(route.methods)), route.path, permission.name if permission else None, scope))
    return rows


def route_problems(app: FastAPI) -> list[str]:
    """What the route walk refuses: a route (other than :data:`OPEN_ROUTES`) without a declared permission, a route
    under ``{project}`` that does not depend on ``in_project``, or any other without a declared cross-project scope."""
    problems = []
    for methods, path, permission, scope in route_table(app):
        if path in OPEN_ROUTES:
            continue
        if permission is None:
            problems.append(f"{methods} {path}: no permission declared (depend on llmops.auth.requires)")
        elif scope is None and "{project}" in path:
            problems.append(f"{methods} {path}: its project is not checked (depend on llmops.auth.in_project)")
        elif scope is None:
            problems.append(f"{methods} {path}: no project check (a {{project}} path, or cross_project(...))")
    return problems
