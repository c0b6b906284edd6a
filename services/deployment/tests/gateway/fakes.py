"""Stand-ins for the gateway's rate limiter and budgets (``gateway/limits.py``, ``gateway/budgets.py``, tested on
their own and end to end in test_budgets_e2e.py), with the same interface, so that the API's tests count what the
handler asks of them. Tests set ``deny`` to refuse."""

from __future__ import annotations

from llmops_deployment.gateway.budgets import Reservation


class FakeLimiter:
    def __init__(self, settings=None) -> None:
        self.deny: Exception | None = None
        self.admitted = 0
        self.tokens = 0

    def admit(self, *, project, key_id, key_rpm, key_tpm, project_rpm, project_tpm, tokens) -> int:
        if self.deny is not None:
            raise self.deny
        self.admitted += 1
        return 0

    def record_tokens(self, *, project, key_id, at, admitted, used) -> None:
        self.tokens += used


class FakeBudgets:
    def __init__(self, pool=None, settings=None) -> None:
        self.deny: Exception | None = None
        self.reserved: list[tuple] = []
        self.settled: list[tuple] = []

    async def reserve(self, *, project, user, key_id, tokens, cost):
        if self.deny is not None:
            raise self.deny
        self.reserved.append((project, user, key_id, tokens))
        return Reservation("r", tokens, cost)

    async def settle(self, reservation, *, tokens, cost) -> None:
        self.settled.append((reservation.id, tokens, cost))

    async def project_limits(self, project):
        return None, None

    async def release_expired(self) -> int:
        return 0
