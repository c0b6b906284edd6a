"""Who calls the gateway: a per-project API key (``Bearer llmk_...``, looked up by its sha256) or a platform JWT.

Keys are cached for ``gateway_cache_seconds`` (found and not found alike): a revoked key stops working within that
time on every gateway replica, without a query per request. A JWT's project is its single project, or the one the
``X-LLMOps-Project`` header names when it has several.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from llmops.auth import AuthError, Principal, TokenVerifier
from llmops.tokens import ALL_PROJECTS
from llmops_deployment.access import hash_api_key, is_api_key
from llmops_deployment.gateway.store import Store
from llmops_deployment.permissions import INFER

#: Keys cached at most (least recently used go first).
MAX_CACHED_KEYS = 50_000


@dataclass(frozen=True)
class Caller:
    project: str
    subject: str  # the key id or the token's subject: what denials and stickiness name
    key_id: str | None = None
    key_rpm: int | None = None
    key_tpm: int | None = None
    principal: Principal | None = None


class Authenticator:
    def __init__(self, store: Store, verifier: TokenVerifier, ttl: float) -> None:
        self.store, self.verifier, self.ttl = store, verifier, ttl
        self._keys: OrderedDict[str, tuple[float, Caller | None]] = OrderedDict()

    async def authenticate(self, authorization: str | None, project_header: str | None) -> Caller:
        """The caller, or :class:`AuthError` (401 unknown credentials, 403 a project or permission not held)."""
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise AuthError(401, "missing_token", "a bearer token (an API key or a platform token) is required")
        token = authorization[7:].strip()
        if is_api_key(token):
            caller = await self._key(token)
            if caller is None:
                raise AuthError(401, "invalid_api_key", "the API key is not valid (unknown or revoked)")
            if project_header and project_header != caller.project:
                raise AuthError(403, "wrong_project", f"the API key is not for project {project_header!r}")
            return caller
        principal = await self.verifier.verify_async(token)
        return _token_caller(principal, project_header)

    async def _key(self, secret: str) -> Caller | None:
        key_hash = hash_api_key(secret)
        now = time.monotonic()
        cached = self._keys.get(key_hash)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        row = await self.store.api_key(key_hash)
        caller = (
            None
            if row is None
            else Caller(row["project"], row["id"], row["id"], row["requests_per_minute"], row["tokens_per_minute"])
        )
        self._keys[key_hash] = (now, caller)
        self._keys.move_to_end(key_hash)
        if len(self._keys) > MAX_CACHED_KEYS:
            self._keys.popitem(last=False)
        return caller


def _token_caller(principal: Principal, project_header: str | None) -> Caller:
    if not INFER.granted_to(principal.roles):
        raise AuthError(403, "missing_role", f"the permission {INFER.name} needs one of the roles ml_engineer, viewer")
    if project_header:
        if not principal.can_access(project_header):
            raise AuthError(403, "wrong_project", f"no access to project {project_header!r}")
        project = project_header
    else:
        projects = sorted(principal.projects)
        if len(projects) != 1 or projects[0] == ALL_PROJECTS:
            raise AuthError(
                403, "project_required", "the token names several projects: say which in the X-LLMOps-Project header"
            )
        project = projects[0]
    return Caller(project, principal.subject, principal=principal)
