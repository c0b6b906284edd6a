"""API keys, project limits and budgets: their use cases, and the two things the gateway shares with them, the form
and hash of a key (:func:`new_api_key`, :func:`hash_api_key`) and a budget period's current window
(:func:`window_start`).

A key's secret is shown once, when it is created: the service keeps its sha256 and its first characters only, and
no event carries it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem, unprocessable
from llmops.runtime import Actor, Runtime
from llmops_deployment import access_queries, access_repository
from llmops_schemas.events.deployments import ApiKeyCreated, ApiKeyRevoked, BudgetSet

#: Every API key starts so (a bearer token that does is looked up as a key, never verified as a JWT).
KEY_PREFIX = "llmk_"
#: Random bytes of a key: 30 bytes are 40 URL-safe base64 characters (240 bits).
KEY_RANDOM_BYTES = 30
#: The characters of a key kept in clear to recognise it in lists (the marker and 7 random characters).
PREFIX_LENGTH = 12
#: The window of a ``total`` budget starts here.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def new_api_key() -> str:
    """A new API key: ``llmk_`` and 40 URL-safe random characters."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_api_key(secret: str) -> str:
    """What is stored of a key and looked up by: the sha256 (hex) of the whole key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def is_api_key(token: str) -> bool:
    """Whether a bearer token is an API key (by its form; whether it is a valid one is the lookup's to say)."""
    return token.startswith(KEY_PREFIX)


def window_start(period: str, now: datetime | None = None) -> datetime:
    """The start of a budget period's current window, in UTC: today, this month, or the epoch for ``total``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == "total":
        return EPOCH
    raise ValueError(f"unknown budget period {period!r}")


def current_windows(now: datetime | None = None) -> dict[str, datetime]:
    now = now or datetime.now(UTC)
    return {period: window_start(period, now) for period in ("day", "month", "total")}


# -- API keys ------------------------------------------------------------------------------------------------------
async def create_key(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    name: str,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
    actor: Actor,
) -> tuple[Row, str]:
    """Create a key and publish ``api_key.created`` (without the secret); the stored row and the secret, which
    nothing keeps."""
    secret = new_api_key()
    row = await access_repository.insert_key(
        session,
        {
            "id": str(uuid.uuid4()),
            "project": project,
            "name": name,
            "prefix": secret[:PREFIX_LENGTH],
            "key_hash": hash_api_key(secret),
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
            "created_by": actor.subject,
        },
    )
    payload = ApiKeyCreated(key_id=row.id, project=project, name=name, prefix=row.prefix, created_by=actor.subject)
    await add_to_outbox(session, runtime.event(payload, subject=row.id, actor=actor, project=project))
    return row, secret


async def revoke_key(
    session: AsyncSession, runtime: Runtime, *, project: str, key_id: str, reason: str, actor: Actor
) -> Row:
    """Revoke a key of the project and publish ``api_key.revoked``; 404 for no such key, 409 for a revoked one."""
    key = await access_repository.lock_key(session, project, key_id)
    if key is None:
        raise Problem(404, f"no API key {key_id} in this project")
    if key.revoked_at is not None:
        raise Problem(409, f"API key {key_id} was revoked already (by {key.revoked_by} at {key.revoked_at})")
    row = await access_repository.revoke_key(session, key_id, actor.subject)
    payload = ApiKeyRevoked(key_id=key_id, project=project, revoked_by=actor.subject, reason=reason)
    await add_to_outbox(session, runtime.event(payload, subject=key_id, actor=actor, project=project))
    return row


# -- limits and budgets --------------------------------------------------------------------------------------------
async def set_limits(
    session: AsyncSession, *, project: str, requests_per_minute: int | None, tokens_per_minute: int | None, actor: Actor
) -> Row:
    """The project's requests and tokens per minute (None: no project limit; the settings' default applies)."""
    return await access_repository.upsert_limits(
        session, project, requests_per_minute, tokens_per_minute, actor.subject
    )


async def _budget_subject(session: AsyncSession, project: str, scope: str, subject: str | None) -> str:
    if scope == "project":
        if subject not in (None, project):
            raise unprocessable("a project budget's subject is the project itself (leave it out)", "subject")
        return project
    if subject is None:
        raise unprocessable(f"a {scope} budget names its subject (the {scope} id)", "subject")
    if scope == "key":
        try:
            subject = str(uuid.UUID(subject))
        except ValueError:
            raise unprocessable(f"{subject!r} is no API key id", "subject") from None
        key = await access_queries.find_key(session, project, subject)
        if key is None:
            raise unprocessable(f"no API key {subject} in this project", "subject")
        if key.revoked_at is not None:
            raise unprocessable(f"API key {subject} is revoked", "subject")
    return subject


async def set_budget(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    scope: str,
    subject: str | None,
    period: str,
    max_tokens: int | None,
    max_cost: float | None,
    actor: Actor,
) -> tuple[Row, bool]:
    """Set the budget of (scope, subject, period), creating it when new, and publish ``budget.set``; the budget with
    its current window's usage, and whether it was created."""
    if max_tokens is None and max_cost is None:
        raise unprocessable("a budget limits max_tokens, max_cost or both", "max_tokens")
    subject = await _budget_subject(session, project, scope, subject)
    row, created = await access_repository.upsert_budget(
        session,
        {
            "project": project,
            "scope": scope,
            "subject": subject,
            "period": period,
            "max_tokens": max_tokens,
            "max_cost": max_cost,
            "updated_by": actor.subject,
        },
    )
    payload = BudgetSet(
        budget_id=row.id,
        project=project,
        scope=scope,  # type: ignore[arg-type]
        subject=subject,
        period=period,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        max_cost=max_cost,
        actor=actor.subject,
    )
    await add_to_outbox(session, runtime.event(payload, subject=row.id, actor=actor, project=project))
    [budget] = await access_queries.list_budgets(session, project, current_windows(), budget_id=row.id)
    return budget, created


async def budgets_with_usage(session: AsyncSession, project: str) -> Sequence[Row]:
    """The project's budgets with what their current windows have used and hold reserved."""
    return await access_queries.list_budgets(session, project, current_windows())
