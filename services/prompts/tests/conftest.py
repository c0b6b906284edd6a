"""Fixtures of the prompts service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from llmops.auth import Role, issue_token
from llmops.db import create_database, drop_database
from llmops.settings import PostgresSettings
from llmops_prompts.app import PromptsService, migrate
from llmops_prompts.settings import PromptsSettings

RUN = uuid.uuid4().hex[:8]
OWNER, APP = "llmops_prompts", "llmops_prompts_app"


@pytest.fixture(scope="session")
def infra_up():
    from llmops import infra

    infra.up()


@pytest.fixture
async def prompts_settings(infra_up):
    pg = PostgresSettings()
    name = f"llmops_prompts_test_{RUN}_{uuid.uuid4().hex[:6]}"
    await create_database(name, owner=OWNER, connect=(APP,))
    settings = PromptsSettings(
        database_url=pg.url(name, user=APP),
        migrations_database_url=pg.url(name, user=OWNER),
        outbox_poll_interval=0.05,
    )
    await asyncio.to_thread(migrate, settings)
    yield settings
    await drop_database(name)


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


def bearer(role: Role, *, projects=("p1",), subject: str = "dana") -> dict[str, str]:
    return {"authorization": f"Bearer {issue_token(subject, [role], list(projects))}"}


ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
ADMIN = bearer(Role.ADMIN, subject="ada")
VIEWER = bearer(Role.VIEWER, subject="vic")
