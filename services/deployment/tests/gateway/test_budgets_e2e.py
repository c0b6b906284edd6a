"""Budgets through the gateway, end to end: two gateway replicas on one database (with their real rate limiter and
budgets) share a budget; concurrent requests are cut off with 429 exactly at it, and the project's, a user's and a
key's budgets are each enforced."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import ExitStack

import asyncpg
import httpx
import pytest

from llmops.db import asyncpg_dsn
from llmops.testing import serve_in_thread
from llmops_deployment.gateway.app import build_gateway

from .conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: A prompt the gateway estimates at 7 tokens (4 characters a token) and that the stub counts as 7; the stub then
#: answers 3 tokens: with max_tokens 3 a request reserves exactly what it uses (10 tokens).
PROMPT = "x" * 28
MAX_TOKENS = 3
PER_REQUEST = 10


@pytest.fixture
def replicas(deployment_settings):
    """Two gateway replicas on the test's database, each a server of its own."""
    settings = deployment_settings.model_copy(update={"gateway_cache_seconds": 0.5})
    with ExitStack() as stack:
        yield [stack.enter_context(serve_in_thread(build_gateway(settings))) for _ in range(2)]


@pytest.fixture
async def served(rows, backends):
    backend = backends("a", "usage-final")
    deployment = await rows.deployment(backend.url)
    await rows.route("chat", [(deployment, 1)])
    key_id, secret = await rows.api_key()
    return {"key_id": key_id, "secret": secret, "backend": backend}


async def set_budget(rows, *, scope: str, subject: str, max_tokens: int) -> str:
    budget_id = str(uuid.uuid4())
    await rows.db.execute(
        "INSERT INTO budgets (id, project, scope, subject, period, max_tokens, updated_by)"
        " VALUES ($1, 'p1', $2, $3, 'day', $4, 'test')",
        budget_id,
        scope,
        subject,
        max_tokens,
    )
    return budget_id


async def send(urls: list[str], secret: str, count: int, *, user: str = "u1") -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        return await asyncio.gather(
            *(
                http.post(
                    f"{urls[i % len(urls)]}/v1/completions",
                    json={"model": "chat", "prompt": PROMPT, "max_tokens": MAX_TOKENS, "user": user},
                    headers={"authorization": f"Bearer {secret}"},
                )
                for i in range(count)
            )
        )


async def usage(rows, budget_id: str):
    return await rows.db.fetchrow(
        "SELECT used_tokens, reserved_tokens FROM budget_usage WHERE budget_id = $1", budget_id
    )


async def test_two_hundred_concurrent_requests_on_two_replicas_stop_at_a_budget_for_fifty(replicas, rows, served):
    budget_id = await set_budget(rows, scope="project", subject="p1", max_tokens=50 * PER_REQUEST)

    answers = await send(replicas, served["secret"], 200)

    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 50 and statuses.count(429) == 150, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert (await served["backend"].requests()) == 50  # a refused request never reached the backend

    async def settled():
        row = await usage(rows, budget_id)
        return row["reserved_tokens"] == 0 and row["used_tokens"] == 50 * PER_REQUEST

    await eventually(settled, what="every reservation settled at exactly the budget")


@pytest.mark.parametrize("scope", ["project", "user", "key"])
async def test_each_budget_is_enforced(replicas, rows, served, scope):
    subject = {"project": "p1", "user": "u7", "key": served["key_id"]}[scope]
    await set_budget(rows, scope=scope, subject=subject, max_tokens=5 * PER_REQUEST)

    answers = await send(replicas, served["secret"], 20, user="u7")

    assert [a.status_code for a in answers].count(200) == 5
    assert all(a.json()["error"]["code"] == "budget_exceeded" for a in answers if a.status_code != 200)


async def test_a_reservation_no_gateway_settles_is_released_by_a_running_gateway(deployment_settings, rows):
    # A replica killed mid-request leaves its reservation: any running gateway releases it once expired.
    from llmops_deployment.gateway.budgets import Budgets

    settings = deployment_settings.model_copy(update={"reservation_ttl_seconds": 1.0})
    budget_id = await set_budget(rows, scope="project", subject="p1", max_tokens=100)
    pool = await asyncpg.create_pool(asyncpg_dsn(settings.db_url), min_size=1, max_size=2)
    try:
        await Budgets(pool, settings).reserve(project="p1", user=None, key_id=None, tokens=100, cost=0.0)
    finally:
        await pool.close()
    assert (await usage(rows, budget_id))["reserved_tokens"] == 100

    with serve_in_thread(build_gateway(settings)):

        async def released():
            return (await usage(rows, budget_id))["reserved_tokens"] == 0

        await eventually(released, within=30, what="the expired reservation released")
