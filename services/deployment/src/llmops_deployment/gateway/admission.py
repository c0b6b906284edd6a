"""Admission of a request to its route's deployments: the targets (ready replicas, the model's context), the rate
limits, and the budgets' reservation before the backend call; its settlement after (off the response path)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from llmops_deployment.gateway.auth import Caller
from llmops_deployment.gateway.budgets import BudgetExceeded, Budgets, Reservation
from llmops_deployment.gateway.errors import GatewayError
from llmops_deployment.gateway.limits import RateLimited, RateLimiter
from llmops_deployment.gateway.routing import Deployment, Router
from llmops_deployment.settings import DeploymentSettings


class Admission:
    def __init__(
        self,
        settings: DeploymentSettings,
        router: Router,
        limiter: RateLimiter,
        budgets: Budgets,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.settings, self.router, self.limiter, self.budgets, self._spawn = settings, router, limiter, budgets, spawn

    async def targets(self, route, record: dict, caller: Caller, model: str, tokens: int):
        """The route's deployments (found) and those to try in order (candidates), or the request's 503/400."""
        plan = route.plan(record["user"] or caller.subject)
        found = await self.router.deployments([*plan, *route.shadows])
        candidates = [found[d] for d in plan if d in found and found[d].replicas]
        if not candidates:
            raise GatewayError(
                503, f"no deployment of {model!r} is ready", code="no_ready_deployment", type_="api_error"
            )
        context = candidates[0].context_length
        if context is not None and tokens > context:
            raise GatewayError(
                400,
                f"the prompt and max_tokens pass the model's context of {context} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return found, candidates

    async def fast(self, caller: Caller, record: dict, model: str, tokens: int):
        """With the route cached: the limits, then its version check and the budget's reservation concurrently (one
        round trip's wait instead of two). The reservation counts only when the version is still the cached one;
        otherwise it is released and the caller takes the ordinary path (``reservation`` None)."""
        cached = self.router.cached(caller.project, model)
        if cached is None:
            return None, None, None, None
        try:
            found, candidates = await self.targets(cached, record, caller, model, tokens)
        except GatewayError:
            return None, None, None, None  # the route may have changed: the ordinary path says
        counted_at = await self._limit(caller, tokens)
        reserve = self.budgets.reserve(
            project=caller.project,
            user=record["user"],
            key_id=caller.key_id,
            tokens=tokens,
            cost=self.cost(candidates[0], tokens, 0),
        )
        route, reserved = await asyncio.gather(
            self.router.route(caller.project, model), reserve, return_exceptions=True
        )
        # The same version (another request may have cached an equal copy meanwhile): the reservation stands.
        if not isinstance(route, BaseException) and route.version == cached.version and route.id == cached.id:
            if isinstance(reserved, BaseException):
                self._refused(caller, counted_at, tokens, reserved)
            return route, found, candidates, replace(reserved, counted_at=counted_at)
        if isinstance(reserved, Reservation):  # held for a route that changed or is gone: released before anything
            await self.budgets.settle(reserved, tokens=0, cost=0.0)  # else, never counted twice (a rare path)
        if isinstance(route, BaseException):
            self.limiter.record_tokens(
                project=caller.project, key_id=caller.key_id, at=counted_at, admitted=tokens, used=0
            )
            raise route
        try:
            found, candidates = await self.targets(route, record, caller, model, tokens)
        except GatewayError:
            self.limiter.record_tokens(
                project=caller.project, key_id=caller.key_id, at=counted_at, admitted=tokens, used=0
            )
            raise
        return route, found, candidates, await self._reserve(caller, record, tokens, candidates[0], counted_at)

    async def admit(self, caller: Caller, record: dict, tokens: int, deployment: Deployment) -> Reservation:
        counted_at = await self._limit(caller, tokens)
        return await self._reserve(caller, record, tokens, deployment, counted_at)

    async def _limit(self, caller: Caller, tokens: int) -> int:
        project_rpm, project_tpm = await self.budgets.project_limits(caller.project)
        try:
            counted_at = self.limiter.admit(
                project=caller.project,
                key_id=caller.key_id,
                key_rpm=caller.key_rpm,
                key_tpm=caller.key_tpm,
                project_rpm=project_rpm,
                project_tpm=project_tpm,
                tokens=tokens,
            )
        except RateLimited as exc:
            raise GatewayError(
                429,
                f"rate limit of the {exc.scope} reached",
                code="rate_limit_exceeded",
                headers={"retry-after": str(max(1, math.ceil(exc.retry_after)))},
            ) from exc
        return counted_at

    async def _reserve(
        self, caller: Caller, record: dict, tokens: int, deployment: Deployment, counted_at: int
    ) -> Reservation:
        try:
            reservation = await self.budgets.reserve(
                project=caller.project,
                user=record["user"],
                key_id=caller.key_id,
                tokens=tokens,
                cost=self.cost(deployment, tokens, 0),
            )
        except BudgetExceeded as exc:
            self._refused(caller, counted_at, tokens, exc)
        return replace(reservation, counted_at=counted_at)

    def _refused(self, caller: Caller, counted_at: int, tokens: int, exc: BaseException):
        """A reservation refused (or failed): the limiter's tokens are given back, and the budget's 429 raised."""
        self.limiter.record_tokens(project=caller.project, key_id=caller.key_id, at=counted_at, admitted=tokens, used=0)
        if not isinstance(exc, BudgetExceeded):
            raise exc
        headers = {"retry-after": str(max(1, math.ceil(exc.retry_after)))} if exc.retry_after else None
        raise GatewayError(
            429,
            f"the {exc.scope} budget of {exc.subject} is spent",
            code="budget_exceeded",
            type_="insufficient_quota",
            headers=headers,
        ) from exc

    def cost(self, deployment: Deployment, tokens_in: int, tokens_out: int) -> float:
        price = self.settings.prices.get(deployment.model_name or "", self.settings.default_price)
        return tokens_in / 1000 * price.input_per_1k + tokens_out / 1000 * price.output_per_1k

    def settle(self, reservation: Reservation, caller: Caller, tokens: int, cost: float) -> None:
        self.limiter.record_tokens(
            project=caller.project,
            key_id=caller.key_id,
            at=reservation.counted_at,
            admitted=reservation.tokens,
            used=tokens,
        )
        self._spawn(self.budgets.settle(reservation, tokens=tokens, cost=cost))
