"""Stand-ins for the limits and budgets the lead writes (``gateway/limits.py``, ``gateway/budgets.py``), with the
same interface; installed as those modules only while the real ones are missing. Tests set ``deny`` to refuse."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass


class RateLimited(Exception):
    def __init__(self, scope: str, retry_after: float) -> None:
        super().__init__(scope)
        self.scope, self.retry_after = scope, retry_after


class BudgetExceeded(Exception):
    def __init__(self, scope: str, subject: str, retry_after: float | None = None) -> None:
        super().__init__(scope)
        self.scope, self.subject, self.retry_after = scope, subject, retry_after


@dataclass(frozen=True)
class Reservation:
    id: str | None
    tokens: int
    cost: float


def install() -> None:
    """Put these in place of the real modules when those have not landed yet."""
    try:
        import llmops_deployment.gateway.budgets
        import llmops_deployment.gateway.limits  # noqa: F401
    except ImportError:
        limits = types.ModuleType("llmops_deployment.gateway.limits")
        limits.RateLimited, limits.RateLimiter = RateLimited, FakeLimiter
        budgets = types.ModuleType("llmops_deployment.gateway.budgets")
        budgets.BudgetExceeded, budgets.Reservation, budgets.Budgets = BudgetExceeded, Reservation, FakeBudgets
        sys.modules[limits.__name__], sys.modules[budgets.__name__] = limits, budgets


class FakeLimiter:
    def __init__(self, settings=None) -> None:
        self.deny: Exception | None = None
        self.admitted = 0
        self.tokens = 0

    def admit(self, *, project, key_id, key_rpm, key_tpm, project_rpm, project_tpm, tokens) -> None:
        if self.deny is not None:
            raise self.deny
        self.admitted += 1

    def record_tokens(self, *, project, key_id, tokens) -> None:
        self.tokens += tokens


class FakeBudgets:
    def __init__(self, pool=None, settings=None) -> None:
        self.deny: Exception | None = None
        self.reserved: list[tuple] = []
        self.settled: list[tuple] = []

    async def reserve(self, *, project, user, key_id, tokens, cost):
        if self.deny is not None:
            raise self.deny
        self.reserved.append((project, user, key_id, tokens))
        return sys.modules["llmops_deployment.gateway.budgets"].Reservation("r", tokens, cost)

    async def settle(self, reservation, *, tokens, cost) -> None:
        self.settled.append((reservation.id, tokens, cost))

    async def project_limits(self, project):
        return None, None
