"""Routing through the gateway against stub backends: a weighted canary split, stickiness, a rollback that applies to
the very next request, shadows that get copies and never answer, fallbacks on 500, refused connections and timeouts,
a backend SIGKILLed under load, and a backend dying mid-stream."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from .conftest import eventually

pytestmark = pytest.mark.integration

CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def key(rows):
    return (await rows.api_key())[1]


@pytest.fixture
async def http(gateway_url, key):
    async with httpx.AsyncClient(
        base_url=gateway_url,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
        # Idle connections are let go well before uvicorn closes them (5 s): a request sent on a connection the
        # server is closing meanwhile fails with a ReadError, a client-side race that a loaded machine makes likely.
        limits=httpx.Limits(max_connections=64, keepalive_expiry=1.0),
    ) as client:
        yield client


async def ask(http: httpx.AsyncClient, model: str = "chat", **extra) -> httpx.Response:
    return await http.post("/v1/chat/completions", json={"model": model, "messages": CHAT, **extra})


def text_of(response: httpx.Response) -> str:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    return response.json()["choices"][0]["message"]["content"]


class TestSplit:
    async def test_a_20_percent_canary_serves_20_percent_of_2000_requests(self, rows, backends, http):
        stable, canary = backends("stable", process=True), backends("canary", process=True)
        await rows.route("chat", [(await rows.deployment(stable.url), 80), (await rows.deployment(canary.url), 20)])
        gate = asyncio.Semaphore(32)

        async def one() -> str:
            async with gate:
                return text_of(await ask(http))

        answers = await asyncio.gather(*(one() for _ in range(2000)))
        share = answers.count("hello from canary") / 2000
        assert 0.17 <= share <= 0.23
        assert await canary.requests() + await stable.requests() == 2000

    async def test_a_sticky_route_sends_a_user_to_the_same_target(self, rows, backends, http):
        a, b = backends("a"), backends("b")
        await rows.route("chat", [(await rows.deployment(a.url), 1), (await rows.deployment(b.url), 1)], sticky=True)
        for user in ("u1", "u2", "u3", "u4"):
            assert len({text_of(await ask(http, user=user)) for _ in range(8)}) == 1


class TestRollback:
    async def test_a_route_change_applies_to_the_very_next_request(self, rows, backends, http):
        old, new = backends("old"), backends("new")
        old_id, new_id = await rows.deployment(old.url), await rows.deployment(new.url)
        await rows.route("chat", [(new_id, 1)])
        assert text_of(await ask(http)) == "hello from new"
        await rows.change_route("chat", [(old_id, 1)])  # the rollback, as the routes API writes it
        assert text_of(await ask(http)) == "hello from old"


class TestShadow:
    async def test_a_shadow_gets_copies_and_its_answers_never_reach_the_client(self, rows, backends, http):
        served, shadow = backends("served"), backends("shadow")
        shadow_id = await rows.deployment(shadow.url)
        await rows.route("chat", [(await rows.deployment(served.url), 1)], shadows=[shadow_id])
        answers = [text_of(await ask(http)) for _ in range(10)]
        stream = await http.post("/v1/chat/completions", json={"model": "chat", "messages": CHAT, "stream": True})
        assert "shadow" not in stream.text
        assert set(answers) == {"hello from served"}
        await eventually(lambda: _count(shadow, 11), what="the shadow's 11 copies")


async def _count(backend, n: int) -> bool:
    return await backend.requests() == n


class TestFallback:
    async def test_a_500_falls_back_to_the_next_deployment(self, rows, backends, http):
        failing, spare = backends("failing", "fail"), backends("spare")
        spare_id = await rows.deployment(spare.url)
        await rows.route("chat", [(await rows.deployment(failing.url), 1)], fallbacks=[spare_id])
        response = await ask(http)
        assert text_of(response) == "hello from spare"
        assert await failing.requests() == 1

    async def test_a_refused_connection_falls_back(self, rows, backends, http):
        from .conftest import free_port

        spare = backends("spare")
        spare_id = await rows.deployment(spare.url)
        await rows.route(
            "chat", [(await rows.deployment(f"http://127.0.0.1:{free_port()}/v1"), 1)], fallbacks=[spare_id]
        )
        assert text_of(await ask(http, stream=False)) == "hello from spare"
        streamed = await http.post("/v1/chat/completions", json={"model": "chat", "messages": CHAT, "stream": True})
        assert "hello" in streamed.text and "spare" in streamed.text

    async def test_a_500_without_fallback_is_a_502_for_the_client(self, rows, backends, http):
        failing = backends("failing", "fail")
        await rows.route("chat", [(await rows.deployment(failing.url), 1)])
        response = await ask(http)
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "api_error"

    @pytest.mark.parametrize("gateway_overrides", [{"first_token_timeout_seconds": 0.5}])
    async def test_a_timeout_falls_back(self, rows, backends, http, gateway_overrides):
        slow, spare = backends("slow", "delay=30"), backends("spare")
        spare_id = await rows.deployment(spare.url)
        await rows.route("chat", [(await rows.deployment(slow.url), 1)], fallbacks=[spare_id])
        started = time.monotonic()
        assert text_of(await ask(http)) == "hello from spare"
        # fell back once the first token was late (0.5 s), long before the slow backend's answer (30 s)
        assert time.monotonic() - started < 10


class TestBackendDeath:
    async def test_a_backend_killed_under_load_gives_clean_errors_then_the_fallback_serves(self, rows, backends, http):
        doomed, spare = backends("doomed", "delay=2", process=True), backends("spare")
        spare_id = await rows.deployment(spare.url)
        await rows.route("chat", [(await rows.deployment(doomed.url), 1)], fallbacks=[spare_id])
        in_flight = [asyncio.create_task(ask(http, stream=bool(i % 2))) for i in range(20)]
        await eventually(lambda: _at_least(doomed, 20), what="requests in flight at the doomed backend")
        doomed.kill()
        started = time.monotonic()
        done = await asyncio.wait_for(asyncio.gather(*in_flight), timeout=10)
        assert time.monotonic() - started < 10
        for response in done:  # nothing streamed yet when it died: each fell back
            assert response.status_code == 200
            assert "spare" in response.text
        after = [await ask(http) for _ in range(5)]
        assert {text_of(r) for r in after} == {"hello from spare"}

    async def test_a_backend_killed_without_fallback_ends_every_request_with_an_error(self, rows, backends, http):
        doomed = backends("doomed", "delay=2", process=True)
        await rows.route("chat", [(await rows.deployment(doomed.url), 1)])
        in_flight = [asyncio.create_task(ask(http)) for _ in range(10)]
        await eventually(lambda: _at_least(doomed, 10), what="requests in flight")
        doomed.kill()
        done = await asyncio.wait_for(asyncio.gather(*in_flight), timeout=10)
        assert {r.status_code for r in done} == {502}

    async def test_a_backend_dying_mid_stream_ends_the_stream_with_an_error_event(
        self, rows, backends, gateway_url, key
    ):
        dying = backends("dying", "die", process=True)
        await rows.route("chat", [(await rows.deployment(dying.url), 1)])
        client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0)
        stream = await client.chat.completions.create(model="chat", messages=CHAT, stream=True)
        with pytest.raises(openai.APIError):
            async with asyncio.timeout(10):
                async for _ in stream:
                    pass
        await client.close()


async def _at_least(backend, n: int) -> bool:
    return await backend.requests() >= n
