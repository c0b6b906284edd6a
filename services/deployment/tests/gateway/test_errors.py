"""The gateway's errors through the official ``openai`` client: each arrives as the client's exception class with
its status (401, 403, 404, 400, 429), OpenAI-style bodies naming the field, and the backend never called."""

from __future__ import annotations

import httpx
import openai
import pytest

from llmops.auth import Role
from llmops.testing import bearer

from ..conftest import STEWARD

pytestmark = pytest.mark.integration


class TestErrors:
    async def test_no_key_is_401(self, setup):
        client = openai.AsyncOpenAI(base_url=f"{setup['url']}/v1", api_key="llmk_unknown", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

    async def test_a_revoked_key_stops_working(self, setup, rows):
        await rows.revoke(setup["key_id"])
        import asyncio

        await asyncio.sleep(0.6)  # the key cache's lifetime in these tests (gateway_cache_seconds)
        with pytest.raises(openai.AuthenticationError):
            await setup["client"].chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])

    async def test_a_role_without_the_permission_is_403(self, setup):
        client = openai.AsyncOpenAI(base_url=f"{setup['url']}/v1", api_key=STEWARD["authorization"][7:], max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

    async def test_another_project_is_403(self, setup):
        token = bearer(Role.ML_ENGINEER, projects=("p1", "p2"))["authorization"][7:]
        client = openai.AsyncOpenAI(
            base_url=f"{setup['url']}/v1", api_key=token, max_retries=0, default_headers={"x-llmops-project": "p3"}
        )
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

    async def test_an_outage_behind_the_gateway_is_a_clean_503_and_the_backend_is_not_called(self, setup, gateway):
        gateway.state.budgets.deny = ConnectionRefusedError(111, "Connection refused")  # its database restarting
        try:
            with pytest.raises(openai.InternalServerError) as raised:
                await setup["client"].chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
        finally:
            gateway.state.budgets.deny = None
        assert raised.value.status_code == 503
        assert raised.value.body["code"] == "gateway_unavailable"
        assert raised.value.response.headers["retry-after"] == "1"
        assert await setup["backend"].requests() == 0

    async def test_an_unknown_route_is_404_and_the_backend_is_not_called(self, setup):
        with pytest.raises(openai.NotFoundError) as raised:
            await setup["client"].chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        assert raised.value.body["param"] == "model"
        assert await setup["backend"].requests() == 0

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"model": "chat", "messages": "hi"}, "messages"),
            ({"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}, "max_tokens"),
            ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
            ({"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ],
    )
    async def test_bad_input_is_400_naming_the_field_and_the_backend_is_not_called(self, setup, body, param):
        async with httpx.AsyncClient(base_url=setup["url"]) as http:
            response = await http.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {setup['secret']}"}
            )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param
        assert await setup["backend"].requests() == 0

    async def test_a_max_tokens_written_as_a_whole_float_is_the_integer_the_schema_says_it_is(self, setup):
        # JSON Schema's integer holds 16.0 (schemathesis sends it); the backend gets 16
        async with httpx.AsyncClient(base_url=setup["url"]) as http:
            response = await http.post(
                "/v1/chat/completions",
                json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 16.0},
                headers={"authorization": f"Bearer {setup['secret']}"},
            )
            refused = await http.post(
                "/v1/chat/completions",
                json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 16.5},
                headers={"authorization": f"Bearer {setup['secret']}"},
            )
        assert response.status_code == 200, response.text
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "max_tokens"

    async def test_malformed_json_is_400(self, setup):
        async with httpx.AsyncClient(base_url=setup["url"]) as http:
            response = await http.post(
                "/v1/chat/completions", content=b"{nope", headers={"authorization": f"Bearer {setup['secret']}"}
            )
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"

    async def test_a_rate_limit_is_429_with_retry_after(self, setup, gateway):
        from llmops_deployment.gateway.limits import RateLimited

        gateway.state.limiter.deny = RateLimited("key k1", "requests-per-minute", 2.0)
        with pytest.raises(openai.RateLimitError) as raised:
            await setup["client"].chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
        assert raised.value.response.headers["retry-after"] == "2"
        assert await setup["backend"].requests() == 0

    async def test_a_spent_budget_is_429(self, setup, gateway):
        from llmops_deployment.gateway.budgets import BudgetExceeded

        gateway.state.budgets.deny = BudgetExceeded("project", "p1", "total", None)
        with pytest.raises(openai.RateLimitError):
            await setup["client"].chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
