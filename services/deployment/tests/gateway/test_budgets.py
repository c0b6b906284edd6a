"""Budgets, exact across gateway replicas: reservations and settlements through the migration's functions on a real
Postgres, two connection pools standing for two gateway replicas."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from llmops.db import asyncpg_dsn
from llmops_deployment.gateway.budgets import BudgetExceeded, Budgets, until_next_window

pytestmark = pytest.mark.integration


@pytest.fixture
async def pools(deployment_settings):
    dsn = asyncpg_dsn(deployment_settings.db_url)
    first = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    second = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    yield first, second
    await first.close()
    await second.close()


async def set_budget(pool, *, scope="project", subject="p1", period="day", max_tokens=None, max_cost=None) -> str:
    budget_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO budgets (id, project, scope, subject, period, max_tokens, max_cost, updated_by)"
        " VALUES ($1, 'p1', $2, $3, $4, $5, $6, 'test')",
        budget_id,
        scope,
        subject,
        period,
        max_tokens,
        max_cost,
    )
    return budget_id


async def usage(pool, budget_id: str) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM budget_usage WHERE budget_id = $1", budget_id)


class TestConcurrentRequestsAcrossReplicas:
    async def test_two_hundred_requests_on_a_budget_for_fifty_admit_exactly_fifty(self, pools, deployment_settings):
        replicas = [Budgets(pool, deployment_settings) for pool in pools]
        budget_id = await set_budget(pools[0], max_tokens=50 * 20)

        async def request(i: int) -> bool:
            budgets = replicas[i % 2]
            try:
                reservation = await budgets.reserve(project="p1", user="u1", key_id=None, tokens=20, cost=0.0)
            except BudgetExceeded:
                return False
            await asyncio.sleep(0)  # the call to the model
            await budgets.settle(reservation, tokens=20, cost=0.0)
            return True

        admitted = await asyncio.gather(*(request(i) for i in range(200)))

        assert sum(admitted) == 50
        row = await usage(pools[0], budget_id)
        assert (row["used_tokens"], row["reserved_tokens"]) == (1000, 0)

    async def test_overspend_is_at_most_what_is_reserved_in_flight(self, pools, deployment_settings):
        # Requests reserve 20 but use 25: the budget is passed by at most the reservations in flight, never more.
        replicas = [Budgets(pool, deployment_settings) for pool in pools]
        budget_id = await set_budget(pools[0], max_tokens=1000)
        in_flight, most_in_flight = 0, 0

        async def request(i: int) -> None:
            nonlocal in_flight, most_in_flight
            try:
                reservation = await replicas[i % 2].reserve(project="p1", user=None, key_id=None, tokens=20, cost=0.0)
            except BudgetExceeded:
                return
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            await replicas[i % 2].settle(reservation, tokens=25, cost=0.0)

        await asyncio.gather(*(request(i) for i in range(200)))

        row = await usage(pools[0], budget_id)
        assert row["reserved_tokens"] == 0
        assert 1000 < row["used_tokens"] <= 1000 + 5 * most_in_flight + 5 * 50


class TestEveryBudgetIsChecked:
    @pytest.mark.parametrize(
        ("scope", "subject"), [("project", "p1"), ("user", "u1"), ("key", "k1")], ids=["project", "user", "key"]
    )
    async def test_each_scope_refuses_once_spent(self, pools, deployment_settings, scope, subject):
        budgets = Budgets(pools[0], deployment_settings)
        await set_budget(pools[0], scope=scope, subject=subject, max_tokens=100)
        first = await budgets.reserve(project="p1", user="u1", key_id="k1", tokens=100, cost=0.0)
        await budgets.settle(first, tokens=100, cost=0.0)

        with pytest.raises(BudgetExceeded) as refused:
            await budgets.reserve(project="p1", user="u1", key_id="k1", tokens=1, cost=0.0)

        assert (refused.value.scope, refused.value.subject) == (scope, subject)
        # Another user, key (or project) is not held by this budget.
        other = await budgets.reserve(project="p2", user="u2", key_id="k2", tokens=1, cost=0.0)
        assert other.id is None

    async def test_the_strictest_budget_wins_and_a_refusal_reserves_nothing(self, pools, deployment_settings):
        budgets = Budgets(pools[0], deployment_settings)
        generous = await set_budget(pools[0], scope="project", subject="p1", max_tokens=10_000)
        await set_budget(pools[0], scope="user", subject="u1", max_tokens=50)

        with pytest.raises(BudgetExceeded) as refused:
            await budgets.reserve(project="p1", user="u1", key_id=None, tokens=60, cost=0.0)

        assert refused.value.scope == "user"
        row = await usage(pools[0], generous)  # no row when the refusal came first in budget order
        assert row is None or row["reserved_tokens"] == 0

    async def test_a_cost_budget_refuses_on_cost(self, pools, deployment_settings):
        budgets = Budgets(pools[0], deployment_settings)
        await set_budget(pools[0], period="month", max_cost=1.0)
        spent = await budgets.reserve(project="p1", user=None, key_id=None, tokens=10, cost=0.75)
        await budgets.settle(spent, tokens=10, cost=0.75)

        with pytest.raises(BudgetExceeded) as refused:
            await budgets.reserve(project="p1", user=None, key_id=None, tokens=10, cost=0.5)

        assert refused.value.period == "month" and refused.value.retry_after > 0

    async def test_a_request_exactly_at_the_limit_is_admitted(self, pools, deployment_settings):
        budgets = Budgets(pools[0], deployment_settings)
        await set_budget(pools[0], period="total", max_tokens=100)

        reservation = await budgets.reserve(project="p1", user=None, key_id=None, tokens=100, cost=0.0)

        assert reservation.id is not None


class TestReservationsNeverSettled:
    async def test_an_expired_reservation_is_released(self, pools, deployment_settings):
        budgets = Budgets(pools[0], deployment_settings.model_copy(update={"reservation_ttl_seconds": 0.001}))
        budget_id = await set_budget(pools[0], max_tokens=100)
        await budgets.reserve(project="p1", user=None, key_id=None, tokens=100, cost=0.0)
        await pools[0].execute("SELECT pg_sleep(0.01)")

        assert await budgets.release_expired() == 1

        row = await usage(pools[0], budget_id)
        assert (row["reserved_tokens"], row["used_tokens"]) == (0, 0)
        assert (await budgets.reserve(project="p1", user=None, key_id=None, tokens=100, cost=0.0)).id is not None


class TestWindows:
    def test_a_day_budget_comes_back_at_midnight_utc(self):
        assert until_next_window("day", datetime(2026, 11, 30, 23, 0, tzinfo=UTC)) == 3600

    def test_a_month_budget_comes_back_on_the_first(self):
        assert until_next_window("month", datetime(2026, 12, 31, 0, 0, tzinfo=UTC)) == 24 * 3600

    def test_a_total_budget_never_comes_back(self):
        assert until_next_window("total") is None
