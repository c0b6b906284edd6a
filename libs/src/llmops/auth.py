"""Authentication and authorisation: bearer JWTs, roles, project scopes, and a published event for every denial.

The tokens themselves (roles, permissions, principals, verification, local issuing) are in :mod:`llmops.tokens`,
which does not import FastAPI; they are re-exported here. Each route declares a :class:`Permission`;
:func:`requires` turns it into a FastAPI dependency that answers 401 or 403 and records an
``security.access.denied`` event through the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmops.errors import Problem
from llmops.tokens import ALL_PROJECTS, AuthError, Permission, Principal, Role, TokenVerifier, issue_token
from llmops_schemas.events import AccessDenied

__all__ = [
    "ALL_PROJECTS",
    "PROJECT_SCOPE",
    "AuthError",
    "DenialRecorder",
    "Permission",
    "Principal",
    "Role",
    "TokenVerifier",
    "cross_project",
    "deny",
    "issue_token",
    "require_project",
    "requires",
]


#: Records a denial (written to the service's outbox in a transaction of its own). Set on ``app.state.on_denied``;
#: called with the denial, the event's subject (the principal or "anonymous") and the request's correlation id.
DenialRecorder = Callable[[AccessDenied, str, str | None], Awaitable[None]]

_bearer = HTTPBearer(auto_error=False, description="A JWT issued by the platform's OIDC provider")


async def deny(request: Request, error: AuthError, *, permission: Permission | None, principal: Principal | None):
    """Publish the denial as a security event, then raise the matching RFC 9457 problem."""
    recorder: DenialRecorder | None = getattr(request.app.state, "on_denied", None)
    if recorder is not None:
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
        if project is not None and not principal.can_access(project):
            # A route under /projects/{project} cannot forget the scope check: the permission brings it.
            error = AuthError(403, "wrong_project", f"no access to project {project!r}")
            await deny(request, error, permission=permission, principal=principal)
        request.state.principal = principal
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # lets tests list each route's permission
    dependency.checks_path_project = True  # type: ignore[attr-defined]  # and see that the project is checked
    return dependency


def cross_project(how: str) -> dict[str, str]:
    """``openapi_extra`` of a route outside ``/projects/{project}``: says (in its OpenAPI operation too) how it keeps
    to the caller's projects, e.g. "results filtered by the token's projects". The route walk test requires it."""
    return {PROJECT_SCOPE: how}


#: The OpenAPI extension naming how a cross-project route keeps to the caller's projects.
PROJECT_SCOPE = "x-project-scope"


async def require_project(request: Request, principal: Principal, project: str) -> None:
    """Refuse (403, recorded) a principal acting in a project outside its scope."""
    if not principal.can_access(project):
        error = AuthError(403, "wrong_project", f"no access to project {project!r}")
        await deny(request, error, permission=None, principal=principal)
