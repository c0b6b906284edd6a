"""A serving worker SIGKILLed while it serves, as an out-of-memory kill would: its backend dies with it (nothing is
left listening), and a second worker of the pool takes the replica over once the lease has expired and serves it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from ..worker_support import chat, full_model, outbox_events, request_deployment, serving, upload, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def worker_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "LLMOPS_DEPLOYMENT_DATABASE_URL": settings.db_url,
        "LLMOPS_DEPLOYMENT_WORKER_GROUP": settings.worker_group,
        "LLMOPS_DEPLOYMENT_WORKER_OFFSET_RESET": settings.worker_offset_reset,
        "LLMOPS_DEPLOYMENT_LEASE_SECONDS": str(settings.lease_seconds),
        "LLMOPS_DEPLOYMENT_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "LLMOPS_DEPLOYMENT_WORK_DIR": str(settings.work_dir),
        "LLMOPS_DEPLOYMENT_CACHE_DIR": str(settings.cache_dir),
        "LLMOPS_DEPLOYMENT_OUTBOX_POLL_INTERVAL": "0.05",
    }


def listening(port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in psutil.net_connections(kind="tcp"))


class TestAWorkerKilledWhileServing:
    async def test_its_backend_dies_with_it_and_a_second_worker_takes_the_replica_over(
        self, deployment_settings, deployment, tiny_model
    ):
        sha = await upload(deployment, tiny_model)
        command = [str(Path(sys.executable).parent / "llmops-deployment"), "worker", "--name", "doomed"]
        doomed = await asyncio.create_subprocess_exec(
            *command, env=worker_env(deployment_settings), stderr=asyncio.subprocess.DEVNULL
        )
        try:
            deployment_id = await request_deployment(deployment, model=full_model(sha))
            first = await wait_for(deployment, deployment_id, lambda r: r.status == "ready", within=180)
        finally:
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
        assert first.worker == "doomed"
        port = urlsplit(first.endpoint).port
        for _ in range(100):  # the backend dies with its worker
            if not listening(port):
                break
            await asyncio.sleep(0.1)
        assert not listening(port), "the backend outlived its worker"

        async with serving(deployment_settings, name="survivor", backend_start_timeout_seconds=120.0):
            taken = await wait_for(
                deployment, deployment_id, lambda r: r.status == "ready" and r.worker == "survivor", within=180
            )
            answer = await chat(taken.endpoint, taken.served_model)
        assert answer.usage.completion_tokens >= 1
        assert taken.attempt >= 2  # 2, or more when a renewal on a loaded machine came too late and it claimed again
        ready = [e["data"] for e in await outbox_events(deployment, deployment_id) if e["type"] == "deployment.ready"]
        assert (ready[0]["worker"], ready[0]["attempt"]) == ("doomed", 1)
        assert ready[-1]["worker"] == "survivor" and ready[-1]["attempt"] == taken.attempt
