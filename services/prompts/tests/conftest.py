"""Fixtures of the prompts service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role."""

from __future__ import annotations

import asyncio
from functools import partial

import httpx
import pytest

from llmops import testing
from llmops.auth import Role
from llmops.testing import service_database
from llmops_prompts.app import PromptsService, migrate
from llmops_prompts.settings import PromptsSettings


@pytest.fixture
async def prompts_settings(infra_up):
    async with service_database(
        "prompts",
        PromptsSettings,
        outbox_poll_interval=0.05,
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def prompts(prompts_settings):
    service = PromptsService(prompts_settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def client(prompts):
    transport = httpx.ASGITransport(app=prompts.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as http:
        yield http


#: The tests' tokens: one role each, in project p1, for "dana" unless they name another subject.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")


ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
ADMIN = bearer(Role.ADMIN, subject="ada")
VIEWER = bearer(Role.VIEWER, subject="vic")
