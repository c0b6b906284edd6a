"""A backend SIGKILLed while it serves, as an out-of-memory kill would: the worker reports ``deployment.restarted``
with the exit code, starts it again after the backoff, and the replica serves again (its endpoint may change)."""

from __future__ import annotations

import os
import signal
from urllib.parse import urlsplit

import psutil
import pytest

from ..worker_support import chat, full_model, request_deployment, serving, upload, wait_for, wait_for_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def listener_of(port: int) -> int:
    [pid] = {
        c.pid for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    return pid


class TestABackendKilledWhileServing:
    async def test_is_restarted_and_serves_again(self, deployment_settings, deployment, tiny_model):
        sha = await upload(deployment, tiny_model)
        async with serving(deployment_settings, backend_start_timeout_seconds=120.0):
            deployment_id = await request_deployment(deployment, model=full_model(sha))
            first = await wait_for(deployment, deployment_id, lambda r: r.status == "ready")
            os.kill(listener_of(urlsplit(first.endpoint).port), signal.SIGKILL)
            [restarted] = await wait_for_event(deployment, deployment_id, "deployment.restarted")
            assert restarted["data"]["restarts"] == 1 and restarted["data"]["exit_code"] == -signal.SIGKILL
            assert restarted["data"]["backoff_seconds"] == deployment_settings.restart_backoff_seconds
            await wait_for_event(deployment, deployment_id, "deployment.ready", count=2)
            again = await wait_for(deployment, deployment_id, lambda r: r.status == "ready")
            answer = await chat(again.endpoint, again.served_model)
        assert answer.usage.completion_tokens >= 1
        assert again.restarts == 1 and again.attempt == 1 and again.worker == "test-worker"
