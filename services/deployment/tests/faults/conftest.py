"""Fixtures of the serving fault tests."""

from __future__ import annotations

import pytest


@pytest.fixture
async def gateway_url(deployment_settings):
    """The gateway, in a thread, re-reading routes every 0.2 s; its base URL."""
    from llmops.testing import serve_in_thread
    from llmops_deployment.gateway.app import build_gateway

    settings = deployment_settings.model_copy(update={"gateway_cache_seconds": 0.2, "first_token_timeout_seconds": 20})
    with serve_in_thread(build_gateway(settings)) as url:
        yield url
