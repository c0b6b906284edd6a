"""The gateway's OpenAI-compatible API through the official ``openai`` client, served on a real port: chat and
completions, streaming and not, usage filled; errors as the client's exception classes; bad input never reaches the
backend; ``/v1/models`` and ``/metrics``."""

from __future__ import annotations

import httpx
import pytest

from ..conftest import ENGINEER

pytestmark = pytest.mark.integration


class TestChat:
    async def test_an_answer_comes_back_with_its_usage(self, setup):
        answer = await setup["client"].chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content == "hello from a"
        assert answer.usage.prompt_tokens == 7 and answer.usage.completion_tokens == 3

    async def test_a_stream_ends_with_usage_when_asked(self, setup):
        stream = await setup["client"].chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "hello from a"
        assert [c.usage for c in chunks if c.usage][-1].completion_tokens == 3

    async def test_a_platform_token_calls_in_its_project(self, setup):
        async with httpx.AsyncClient(base_url=setup["url"]) as http:
            response = await http.post(
                "/v1/chat/completions",
                headers=ENGINEER,
                json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert response.status_code == 200
        assert response.headers["x-request-id"]

    async def test_the_clients_request_id_is_kept(self, setup):
        async with httpx.AsyncClient(base_url=setup["url"]) as http:
            response = await http.post(
                "/v1/chat/completions",
                headers={**ENGINEER, "x-request-id": "req-42"},
                json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert response.headers["x-request-id"] == "req-42"


class TestCompletions:
    async def test_a_completion_comes_back_with_its_usage(self, setup):
        answer = await setup["client"].completions.create(model="chat", prompt="say hi")
        assert answer.choices[0].text == "hello from a"
        assert answer.usage.total_tokens == 10

    async def test_a_streamed_completion_has_usage(self, setup):
        stream = await setup["client"].completions.create(
            model="chat", prompt="say hi", stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "hello from a"
        assert [c.usage for c in chunks if c.usage][-1].prompt_tokens == 7


class TestBudgets:
    async def test_a_request_reserves_before_and_settles_its_real_usage(self, setup, gateway):
        await setup["client"].chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        budgets = gateway.state.budgets
        assert budgets.reserved[0][3] >= 20
        from .conftest import eventually

        await eventually(lambda: budgets.settled, what="the settlement")
        assert budgets.settled[0][1] == 10


class TestModels:
    async def test_the_projects_routes_are_listed(self, setup):
        models = await setup["client"].models.list()
        assert [m.id for m in models.data] == ["chat"]

    async def test_without_credentials_is_401(self, setup):
        async with httpx.AsyncClient(base_url=setup["url"]) as http:
            assert (await http.get("/v1/models")).status_code == 401


class TestMetrics:
    async def test_requests_and_errors_are_counted(self, setup):
        await setup["client"].chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
        async with httpx.AsyncClient(base_url=setup["url"]) as http:
            text = (await http.get("/metrics")).text
        assert "llmops_gateway_requests_total 1" in text
        assert "llmops_gateway_records_dropped_total 0" in text
