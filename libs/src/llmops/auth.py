"""Authentication and authorisation: bearer JWTs, roles, project scopes, and a published event for every denial.

Tokens are verified locally: HS256 with a shared secret (local setups), or RS256 against the signing keys of the
organisation's OIDC provider (its JWKS URL). Claims: ``sub`` (the principal), ``roles`` (list), ``projects`` (list,
``"*"`` for every project). Each route declares a :class:`Permission`; :func:`requires` turns it into a FastAPI
dependency that answers 401 or 403 and records an ``security.access.denied`` event through the outbox.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmops.errors import Problem
from llmops.settings import AuthSettings
from llmops_schemas.events import AccessDenied

ALL_PROJECTS = "*"


class Role(StrEnum):
    ADMIN = "admin"
    ML_ENGINEER = "ml-engineer"
    DATA_STEWARD = "data-steward"
    VIEWER = "viewer"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Permission:
    """A named right a route declares, and the roles that hold it (admin holds every permission)."""

    name: str
    roles: frozenset[Role]

    def __init__(self, name: str, roles: set[Role] | frozenset[Role] | tuple[Role, ...]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "roles", frozenset(roles) | {Role.ADMIN})

    def granted_to(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, roles and the projects it may act in."""

    subject: str
    roles: frozenset[Role]
    projects: frozenset[str] = field(default_factory=frozenset)

    def can_access(self, project: str) -> bool:
        return ALL_PROJECTS in self.projects or project in self.projects


class AuthError(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class TokenVerifier:
    """Verifies bearer tokens per :class:`AuthSettings` (HS256 secret or RS256 JWKS)."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self.settings = settings or AuthSettings()
        self._jwks = jwt.PyJWKClient(self.settings.jwks_url) if self.settings.algorithm == "RS256" else None

    def _key(self, token: str):
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        return self.settings.jwt_secret.get_secret_value()

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=[self.settings.algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(401, "expired_token", "the token has expired") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise AuthError(401, "invalid_token", f"the token is not valid: {exc}") from exc
        try:
            roles = frozenset(Role(r) for r in claims.get("roles", []))
        except ValueError as exc:
            raise AuthError(401, "invalid_token", f"the token names an unknown role: {exc}") from exc
        return Principal(str(claims["sub"]), roles, frozenset(str(p) for p in claims.get("projects", [])))


def issue_token(
    subject: str,
    roles: list[Role] | list[str],
    projects: list[str],
    settings: AuthSettings | None = None,
    *,
    ttl_seconds: int | None = None,
) -> str:
    """Sign an HS256 token (local development and tests; production tokens come from the OIDC provider)."""
    settings = settings or AuthSettings()
    if settings.algorithm != "HS256":
        raise ValueError("tokens can only be issued locally with HS256; use your OIDC provider for RS256")
    now = int(time.time())
    claims = {
        "sub": subject,
        "roles": [Role(r).value for r in roles],
        "projects": projects,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": now,
        "exp": now + (ttl_seconds or settings.token_ttl_seconds),
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


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
            principal = verifier.verify(credentials.credentials)
        except AuthError as error:
            await deny(request, error, permission=permission, principal=None)
        if not permission.granted_to(principal.roles):
            error = AuthError(
                403,
                "missing_role",
                f"the permission {permission.name} needs one of the roles {', '.join(sorted(permission.roles))}",
            )
            await deny(request, error, permission=permission, principal=principal)
        request.state.principal = principal
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # lets tests list each route's permission
    return dependency


async def require_project(request: Request, principal: Principal, project: str) -> None:
    """Refuse (403, recorded) a principal acting in a project outside its scope."""
    if not principal.can_access(project):
        error = AuthError(403, "wrong_project", f"no access to project {project!r}")
        await deny(request, error, permission=None, principal=principal)
