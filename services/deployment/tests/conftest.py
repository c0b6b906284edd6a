"""Fixtures of the deployment service's tests: real Postgres, Kafka and S3 store; a fresh database per test, migrated
as the owner role and used through the runtime role."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from pathlib import Path

import httpx
import pytest

from llmops import testing
from llmops.auth import Role
from llmops.testing import service_database
from llmops_deployment.app import DeploymentService, migrate
from llmops_deployment.settings import DeploymentSettings


@pytest.fixture
def offset_reset() -> str:
    """Tests start the consumers past the shared topics' history (a consumer's own tests override this)."""
    return "latest"


@pytest.fixture
async def deployment_settings(infra_up, tmp_path, offset_reset):
    async with service_database(
        "deployment",
        DeploymentSettings,
        outbox_poll_interval=0.05,
        lease_seconds=3,
        session_timeout_ms=6000,
        restart_backoff_seconds=0.2,
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        consumer_group=f"deployment-test-{uuid.uuid4().hex[:12]}",
        consumer_offset_reset=offset_reset,
        # Workers of this test only: another test run or the demo sharing Kafka must not take its deployments.
        worker_group=f"deployment-worker-test-{uuid.uuid4().hex[:12]}",
        worker_offset_reset="latest",
    ) as settings:
        await asyncio.to_thread(migrate, settings)
        yield settings


@pytest.fixture
async def deployment(deployment_settings):
    running = DeploymentService(deployment_settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(deployment):
    transport = httpx.ASGITransport(app=deployment.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as http:
        yield http


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama with its own tokenizer, built offline (the same for every test)."""
    from llmops.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


#: The tests' tokens: one role each, in project p1.
bearer = partial(testing.bearer, projects=("p1",), subject="dana")
ENGINEER = bearer(Role.ML_ENGINEER, subject="eve")
ADMIN = bearer(Role.ADMIN, subject="ada")
VIEWER = bearer(Role.VIEWER, subject="vic")
STEWARD = bearer(Role.DATA_STEWARD, subject="sam")
