"""Bearer tokens without a web framework: roles, permissions, principals, verification and local issuing.

Tokens are verified locally: HS256 with a shared secret (local setups), or RS256 against the signing keys of the
organisation's OIDC provider (its JWKS URL). Claims: ``sub`` (the principal), ``roles`` (list), ``projects`` (list,
``"*"`` for every project). The command line imports this module; :mod:`llmops.auth` adds the FastAPI dependencies.
PyJWT (and the cryptography it loads) is imported when a token is first verified or issued, not with this module:
every ``llmops`` command imports :class:`Role`, few sign or check a token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from llmops.settings import AuthSettings

ALL_PROJECTS = "*"


class Role(StrEnum):
    """A role a token grants; permissions name the roles that hold them."""

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
        """Whether any of ``roles`` holds this permission."""
        return bool(self.roles & roles)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, roles and the projects it may act in."""

    subject: str
    roles: frozenset[Role]
    projects: frozenset[str] = field(default_factory=frozenset)

    def can_access(self, project: str) -> bool:
        """Whether the principal may act in ``project`` (every project when its scope has ``*``)."""
        return ALL_PROJECTS in self.projects or project in self.projects


class AuthError(Exception):
    """A refused token or request: the HTTP status (401 or 403), a machine-readable reason and the detail."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


#: How long a JWKS fetch may take before the token is refused (the request waits for it, the event loop does not).
JWKS_TIMEOUT_SECONDS = 5


class TokenVerifier:
    """Verifies bearer tokens per :class:`AuthSettings` (HS256 secret or RS256 JWKS)."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        import jwt

        self.settings = settings or AuthSettings()
        self._jwks = (
            jwt.PyJWKClient(self.settings.jwks_url, timeout=JWKS_TIMEOUT_SECONDS)
            if self.settings.algorithm == "RS256"
            else None
        )

    def _key(self, token: str):
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        return self.settings.jwt_secret.get_secret_value()

    async def verify_async(self, token: str) -> Principal:
        """:meth:`verify` without blocking the event loop: with RS256 the key may have to be fetched from the JWKS
        URL (then cached), which runs in a worker thread; HS256 needs no I/O and runs inline."""
        if self._jwks is None:
            return self.verify(token)
        import asyncio

        return await asyncio.to_thread(self.verify, token)

    def verify(self, token: str) -> Principal:
        """The token's principal; :class:`AuthError` (401) when it is expired, invalid or names an unknown role."""
        import jwt

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
    import jwt

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
