"""Fixtures of the evaluation service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role; the service with its consumers, and an HTTP client of its app."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial

import httpx
import pytest

from llmops import testing
from llmops.auth import Role
from llmops.testing import service_database
from llmops_evaluation.app import EvaluationService, migrate
from llmops_evaluation.settings import EvaluationSettings


@pytest.fixture
def offset_reset() -> str:
    """Tests start the consumers past the shared topics' history (a consumer's own tests override this)."""
    return "latest"


@pytest.fixture
async def evaluation_settings(infra_up, offset_reset):
    async with service_database(
        "evaluation",
        EvaluationSettings,
        outbox_poll_interval=0.05,
        consumer_group=f"evaluation-test-{uuid.uuid4().hex[:12]}",
        consumer_offset_reset=offset_reset,
        bootstrap_resamples=500,
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def evaluation(evaluation_settings):
    service = EvaluationService(evaluation_settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def client(evaluation):
    transport = httpx.ASGITransport(app=evaluation.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as http:
        yield http


#: The tests' tokens: one role each, in project p1.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")

ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
VIEWER = bearer(Role.VIEWER, subject="vic")
STEWARD = bearer(Role.DATA_STEWARD, subject="sam")
AUDITOR = bearer(Role.AUDITOR, subject="aud")
