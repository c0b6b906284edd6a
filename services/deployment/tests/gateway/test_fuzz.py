"""schemathesis, with all its checks, against the inference gateway over HTTP, authenticated with a project API key:
no server error, no undocumented status or content type, no answer that breaks its schema, no schema-violating
request accepted (each refused with a 400 before any backend is called). The gateway runs as deployed, with its real
limits and budgets, the real prompts service (prompts by label), and a stub backend for its one route.

``LLMOPS_FUZZ_EXAMPLES`` and ``LLMOPS_FUZZ_SEED`` bound and vary the run, as for the services (tests/api)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from llmops.testing import schemathesis, serve_in_thread

from ..conftest import ENGINEER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FUZZ = Path(__file__).with_name("fuzz")


@pytest.fixture
async def gateway_url(deployment_settings, prompts_url):
    from llmops_deployment.gateway.app import build_gateway

    settings = deployment_settings.model_copy(
        update={"prompts_url": prompts_url, "prompts_token": SecretStr(ENGINEER["authorization"][7:])}
    )
    with serve_in_thread(build_gateway(settings)) as url:
        yield url


async def test_the_gateway_keeps_its_contract(gateway_url, rows, backends, tmp_path):
    backend = backends("a", "usage-final")
    await rows.route("fuzz", [(await rows.deployment(backend.url), 1)])
    _, key = await rows.api_key()
    run = await asyncio.to_thread(
        schemathesis,
        f"{gateway_url}/openapi.json",
        config=FUZZ / "schemathesis.toml",
        authorization=f"Bearer {key}",
        seed="20261201",
        cwd=tmp_path,
    )
    # Reproductions of huge bodies can be megabytes long: the report is cut to what a reader can use.
    report = "\n".join(line[:2000] for line in run.stdout.splitlines()[-400:])
    assert run.returncode == 0, f"schemathesis found problems in the gateway's API:\n{report}{run.stderr[-5000:]}"
    assert await backend.requests() > 0, "schema-valid requests reached the backend"
