"""Token and cost budgets, exact across gateway replicas: a request reserves the most it may use before the call and
settles what it used after, each in one round trip to Postgres (the functions ``reserve_budget`` and
``settle_budget`` of the service's migration, which lock the request's budget rows in one order and compare in one
place). Every budget that applies (the project's, the user's, the key's) is checked: the strictest wins. Concurrent
requests on any number of replicas overspend by at most what is reserved in flight, and not even that when requests
use what they reserved.

A reservation its gateway never settles (a replica killed mid-request) is released by ``release_expired`` after
``reservation_ttl_seconds``, which must exceed the longest request (``total_timeout_seconds``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from llmops_deployment.settings import DeploymentSettings


class BudgetExceeded(Exception):
    """A budget would pass its limit: ``retry_after`` is the seconds until its period starts again (None for a
    budget over the whole time)."""

    def __init__(self, scope: str, subject: str, period: str, retry_after: float | None) -> None:
        super().__init__(f"the {period} budget of {scope} {subject} is spent")
        self.scope = scope
        self.subject = subject
        self.period = period
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reservation:
    """What a request holds on its budgets; ``id`` is None when no budget applies (nothing to settle).
    ``counted_at`` is the second the rate limiter counted the request in (its tokens are corrected there)."""

    id: str | None
    tokens: int
    cost: float
    counted_at: int = 0


def until_next_window(period: str, now: datetime | None = None) -> float | None:
    """Seconds until the period's next window starts (UTC days and months); None for ``total``."""
    now = now or datetime.now(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    elif period == "month":
        start = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)
    else:
        return None
    return max((start - now).total_seconds(), 1.0)


class Budgets:
    """Reservations and settlements on the deployment service's database, and the projects' rate limits."""

    def __init__(self, pool: asyncpg.Pool, settings: DeploymentSettings) -> None:
        self._pool = pool
        self._ttl = settings.reservation_ttl_seconds
        self._cache_seconds = settings.gateway_cache_seconds
        self._limits: dict[str, tuple[float, tuple[int | None, int | None]]] = {}

    async def reserve(
        self, *, project: str, user: str | None, key_id: str | None, tokens: int, cost: float
    ) -> Reservation:
        """Reserve ``tokens`` and ``cost`` on every budget that applies, or raise :class:`BudgetExceeded`."""
        row = await self._pool.fetchrow(
            "SELECT * FROM reserve_budget($1, $2, $3, $4, $5, $6)", project, user, key_id, tokens, cost, self._ttl
        )
        if row["refused_budget"] is not None:
            period = row["refused_period"]
            raise BudgetExceeded(row["refused_scope"], row["refused_subject"], period, until_next_window(period))
        reservation_id = row["reservation_id"]
        return Reservation(None if reservation_id is None else str(reservation_id), tokens, cost)

    async def settle(self, reservation: Reservation, *, tokens: int, cost: float) -> None:
        """Charge what the request used and release what it reserved."""
        if reservation.id is not None:
            await self._pool.execute("SELECT settle_budget($1::uuid, $2, $3)", reservation.id, tokens, cost)

    async def release_expired(self) -> int:
        """Release the reservations their gateways never settled; how many."""
        return await self._pool.fetchval("SELECT release_expired_reservations()")

    async def project_limits(self, project: str) -> tuple[int | None, int | None]:
        """The project's requests and tokens per minute (None: not set), cached ``gateway_cache_seconds``."""
        cached = self._limits.get(project)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        row = await self._pool.fetchrow(
            "SELECT requests_per_minute, tokens_per_minute FROM project_limits WHERE project = $1", project
        )
        limits = (None, None) if row is None else (row["requests_per_minute"], row["tokens_per_minute"])
        self._limits[project] = (now, limits)
        return limits
