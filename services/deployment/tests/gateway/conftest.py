"""Fixtures of the gateway's tests: stub backends as processes of their own, the gateway served on a real port (its
database the test's, its limits and budgets counted by fakes), rows inserted directly, and the
official ``openai`` client against it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from llmops.testing import serve, serve_in_thread, service_database

from ..conftest import ENGINEER
from . import fakes

# Stubs on threads share the GIL with the test's event loop: hand it over often, or each request waits out the
# default 5 ms switch interval at every turn.
sys.setswitchinterval(0.0002)

STUB = Path(__file__).with_name("stub_backend.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Backend:
    """A stub backend: a process of its own (``process=True``: it can be SIGKILLed, or die mid-stream), else
    uvicorn on a thread of its own (quick to start); its base URL and request count."""

    def __init__(self, name: str, mode: str, *, process: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process = self.server = None
        if process:
            self.process = subprocess.Popen(
                [sys.executable, str(STUB), "--port", str(self.port), "--name", name, "--mode", mode],
                stdout=subprocess.DEVNULL,
            )
        else:
            import uvicorn

            from .stub_backend import stub

            self.server = uvicorn.Server(
                uvicorn.Config(stub(name, mode), port=self.port, log_config=None, access_log=False, lifespan="off")
            )
            self.thread = threading.Thread(target=self.server.run, daemon=True)
            self.thread.start()

    def wait_up(self, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"stub backend on {self.port} did not start")

    async def stats(self) -> dict:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{self.port}/stats")).json()

    async def requests(self) -> int:
        return (await self.stats())["requests"]

    def kill(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(5)
        elif self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def backends():
    """Start stub backends: ``backends("name", "mode")``; all are killed at the end."""
    started: list[Backend] = []

    def start(name: str = "a", mode: str = "usage-final", *, process: bool = False) -> Backend:
        backend = Backend(name, mode, process=process)
        started.append(backend)
        backend.wait_up()
        return backend

    yield start
    for backend in started:
        backend.kill()


@pytest.fixture
def gateway_overrides() -> dict:
    return {}


@pytest.fixture
async def gateway(deployment_settings, gateway_overrides):
    """The gateway's app (its fakes on ``app.state``), on the test's database, started and served on a real port by
    a thread with an event loop of its own (``app.state.url``): served in the test's own loop, every answer waited
    out a delayed ACK (about 40 ms) between the test's client and the server."""
    from llmops_deployment.gateway.app import build_gateway

    settings = deployment_settings.model_copy(
        update={"gateway_cache_seconds": 0.5, "first_token_timeout_seconds": 5, **gateway_overrides}
    )
    limiter, budgets = fakes.FakeLimiter(), fakes.FakeBudgets()
    app = build_gateway(settings, limiter=limiter, budgets=lambda pool, s: budgets)
    app.state.limiter, app.state.budgets = limiter, budgets
    with serve_in_thread(app) as url:
        app.state.url = url
        yield app


@pytest.fixture
def gateway_url(gateway):
    return gateway.state.url


@pytest.fixture
async def rows(deployment_settings):
    from .rows import Rows

    opened = await Rows.open(deployment_settings.db_url)
    yield opened
    await opened.close()


async def eventually(predicate, *, within: float = 20, what: str = "a condition") -> None:
    """Wait until ``predicate()`` (sync or async) holds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def setup(gateway_url, rows, backends):
    backend = backends("a", "usage-final")
    deployment = await rows.deployment(backend.url)
    await rows.route("chat", [(deployment, 1)])
    key_id, secret = await rows.api_key()
    client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=secret, max_retries=0)
    yield {
        "client": client,
        "backend": backend,
        "url": gateway_url,
        "key_id": key_id,
        "secret": secret,
        "deployment": deployment,
    }
    await client.close()


TEMPLATE = {
    "kind": "chat",
    "messages": [
        {"role": "system", "content": "You answer for {{ company }}."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "variables": {"company": {"type": "string"}, "question": {"type": "string"}},
}


@pytest.fixture
async def prompts_url(infra_up):
    """The real prompts service on a port of its own, with prompt ``support`` (TEMPLATE) labelled production."""
    from llmops_prompts.app import PromptsService
    from llmops_prompts.app import migrate as migrate_prompts
    from llmops_prompts.settings import PromptsSettings

    async with service_database("prompts", PromptsSettings, outbox_poll_interval=0.05) as settings:
        await asyncio.to_thread(migrate_prompts, settings)
        service = PromptsService(settings)
        await service.start()
        async with serve(service.app) as url, httpx.AsyncClient(base_url=url, headers=ENGINEER) as http:
            assert (await http.post("/projects/p1/prompts", json={"name": "support"})).status_code == 201
            body = {"template": TEMPLATE, "parameters": {}, "message": "v1"}
            assert (await http.post("/projects/p1/prompts/support/versions", json=body)).status_code == 201
            moved = await http.put("/projects/p1/prompts/support/labels/production", json={"version": 1, "reason": "r"})
            assert moved.status_code < 300, moved.text
            yield url
        await service.stop()
