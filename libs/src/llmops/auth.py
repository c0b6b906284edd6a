"""Authentication and authorisation: bearer JWTs, roles, project scopes, and a published event for every denial.

The tokens themselves (roles, permissions, principals, verification, local issuing) are in :mod:`llmops.tokens`,
which does not import FastAPI; they are re-exported here. Each route declares a :class:`Permission`;
:func:`requires` turns it into a FastAPI dependency that answers 401 or 403 and records an
``security.access.denied`` event through the outbox; :func:`in_project` adds the project of the path, so that a
route under ``/projects/{project}`` receives a caller already checked for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmops.errors import Problem
from llmops.runtime import Actor
from llmops.tokens import ALL_PROJECTS, AuthError, Permission, Principal, Role, TokenVerifier, issue_token
from llmops.types import ProjectPath
from llmops_schemas.events import AccessDenied

__all__ = [
    "ALL_PROJECTS",
    "PROJECT_SCOPE",
    "AuthError",
    "DenialRecorder",
    "Permission",
    "Principal",
    "ProjectScope",
    "Role",
    "TokenVerifier",
    "cross_project",
    "deny",
    "in_project",
    "issue_token",
    "record_denial",
    "require_project",
    "requires",
]


#: Records a denial (written to the service's outbox in a transaction of its own). Set on ``app.state.on_denied``;
#: called with the denial, the event's subject (the principal or "anonymous") and the request's correlation id.
DenialRecorder = Callable[[AccessDenied, str, str | None], Awaitable[None]]

_bearer = HTTPBearer(auto_error=False, description="A JWT issued by the platform's OIDC provider")


async def record_denial(
    request: Request, error: AuthError, *, permission: Permission | None, principal: Principal | None
) -> None:
    """Publish a denial of ``request`` as a ``security.access.denied`` event (through ``app.state.on_denied``)."""
    recorder: DenialRecorder | None = getattr(request.app.state, "on_denied", None)
    if recorder is None:
        return
    denial = AccessDenied(
        service=getattr(request.app.state, "service", "unknown"),
        status=error.status,
        reason=error.reason,
        permission=permission.name if permission else None,
        method=request.method,
        path=request.url.path,
        principal=principal.subject if principal else None,
        roles=tuple(sorted(principal.roles)) if principal else (),
        project=request.path_params.get("project") or request.query_params.get("project"),
        request_id=getattr(request.state, "request_id", None),
        source=request.client.host if request.client else None,
    )
    await recorder(
        denial, principal.subject if principal else "anonymous", getattr(request.state, "correlation_id", None)
    )


async def deny(request: Request, error: AuthError, *, permission: Permission | None, principal: Principal | None):
    """Publish the denial as a security event, then raise the matching RFC 9457 problem."""
    await record_denial(request, error, permission=permission, principal=principal)
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    raise Problem(error.status, error.detail, type_=f"urn:llmops:problem:{error.reason}", headers=headers)


def requires(permission: Permission):
    """A FastAPI dependency: the caller's :class:`Principal` if it holds ``permission``, else 401/403."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        verifier: TokenVerifier = request.app.state.token_verifier
        if credentials is None:
            await deny(
                request,
                AuthError(401, "missing_token", "a bearer token is required"),
                permission=permission,
                principal=None,
            )
        try:
            principal = await verifier.verify_async(credentials.credentials)
        except AuthError as error:
            await deny(request, error, permission=permission, principal=None)
        if not permission.granted_to(principal.roles):
            error = AuthError(
                403,
                "missing_role",
                f"the permission {permission.name} needs one of the roles {', '.join(sorted(permission.roles))}",
            )
            await deny(request, error, permission=permission, principal=principal)
        project = request.path_params.get("project")
        if project is not None:  # a route under /projects/{project} cannot forget the scope check: it comes here
            await require_project(request, principal, project, permission=permission)
        request.state.principal = principal
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # lets tests list each route's permission
    return dependency


def actor_of(request: Request, principal: Principal) -> Actor:
    """The actor of a request made by ``principal``: its subject and the request's correlation id."""
    return Actor(principal.subject, getattr(request.state, "correlation_id", None))


@dataclass(frozen=True)
class ProjectScope:
    """The caller of a route under ``/projects/{project}``, already checked for that project: the project, the
    principal, and the actor its events name."""

    project: str
    principal: Principal
    actor: Actor


def in_project(permission: Permission):
    """A FastAPI dependency for routes under ``/projects/{project}``: the :class:`ProjectScope` of a caller holding
    ``permission`` with access to the path's project, else 401/403 (recorded). The route walk
    (:mod:`llmops.routes`) refuses a ``{project}`` route that does not depend on it."""
    principal_of = requires(permission)

    # A default, not Annotated: string annotations (this module's future import) cannot name the local principal_of.
    async def dependency(
        request: Request, project: ProjectPath, principal: Principal = Depends(principal_of)
    ) -> ProjectScope:
        # principal_of has refused a principal outside the path's project (before the path was validated, as ever).
        return ProjectScope(project, principal, actor_of(request, principal))

    dependency.permission = permission  # type: ignore[attr-defined]
    dependency.scopes_path_project = True  # type: ignore[attr-defined]  # the route walk looks for it
    return dependency


def cross_project(how: str) -> dict[str, str]:
    """``openapi_extra`` of a route outside ``/projects/{project}``: says (in its OpenAPI operation too) how it keeps
    to the caller's projects, e.g. "results filtered by the token's projects". The route walk test requires it."""
    return {PROJECT_SCOPE: how}


#: The OpenAPI extension naming how a cross-project route keeps to the caller's projects.
PROJECT_SCOPE = "x-project-scope"


async def require_project(
    request: Request, principal: Principal, project: str, *, permission: Permission | None = None
) -> None:
    """Refuse (403, recorded, naming ``permission`` when a route's) a principal acting outside its projects."""
    if not principal.can_access(project):
        error = AuthError(403, "wrong_project", f"no access to project {project!r}")
        await deny(request, error, permission=permission, principal=principal)
