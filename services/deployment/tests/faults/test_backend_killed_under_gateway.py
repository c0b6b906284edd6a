"""The whole serving path under one fault: clients call a route through the gateway, the route's deployment is a real
``transformers serve`` started by a real serving worker, and that backend is SIGKILLed while requests are in flight.
Every request in flight ends with a clean error (none hangs), the worker restarts the backend, and traffic through
the gateway resumes on the restarted backend (whose port has changed). Then the same with a fallback on the route:
no client sees an error at all while the backend is down."""

from __future__ import annotations

import os
import signal
import time
from urllib.parse import urlsplit

import openai
import pytest

from ..gateway.conftest import Backend, eventually
from ..gateway.rows import Rows
from ..worker_support import full_model, request_deployment, serving, upload, wait_for, wait_for_event
from .test_backend_killed import listener_of
from .traffic import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


async def test_a_served_backend_killed_under_gateway_traffic(deployment_settings, deployment, tiny_model, gateway_url):
    sha = await upload(deployment, tiny_model)
    rows = await Rows.open(deployment_settings.db_url)
    spare = Backend("spare", "usage-final", process=False)
    spare.wait_up()
    try:
        async with serving(deployment_settings, backend_start_timeout_seconds=120.0):
            deployment_id = await request_deployment(deployment, model=full_model(sha))
            first = await wait_for(deployment, deployment_id, lambda r: r.status == "ready")
            await rows.route("assistant", [(deployment_id, 1)])
            _, key = await rows.api_key()
            client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0, timeout=60)

            # Without a fallback: the requests in flight end with a clean error, then traffic resumes.
            traffic = Traffic(client, "assistant")
            await eventually(lambda: traffic.since(0).count("ok") >= 8, within=60, what="answers before the kill")
            killed_at = time.monotonic()
            os.kill(listener_of(urlsplit(first.endpoint).port), signal.SIGKILL)
            await wait_for_event(deployment, deployment_id, "deployment.restarted")
            await wait_for_event(deployment, deployment_id, "deployment.ready", count=2)
            resumed_at = time.monotonic()
            await eventually(
                lambda: traffic.since(resumed_at).count("ok") >= 8, within=60, what="answers after the restart"
            )
            await traffic.stop()
            during = traffic.since(killed_at)
            errors = {outcome for outcome in during if outcome != "ok"}
            assert errors, "the kill was never seen by a client"
            assert errors <= {"status 502", "status 503"}, errors  # clean errors from the gateway, not transport ones
            assert max(seconds for _, _, seconds, _ in traffic.outcomes) < 30, "a request hung"
            again = await wait_for(deployment, deployment_id, lambda r: r.status == "ready")
            assert again.endpoint != first.endpoint and again.restarts == 1

            # With a fallback: nobody sees the second kill.
            spare_id = await rows.deployment(spare.url)
            await rows.change_route("assistant", [(deployment_id, 1)], fallbacks=[spare_id])
            traffic = Traffic(client, "assistant")
            await eventually(lambda: traffic.since(0).count("ok") >= 8, within=60, what="answers before the kill")
            os.kill(listener_of(urlsplit(again.endpoint).port), signal.SIGKILL)
            await wait_for_event(deployment, deployment_id, "deployment.restarted", count=2)
            await wait_for_event(deployment, deployment_id, "deployment.ready", count=3)
            assert await spare.requests() > 0, "the fallback was never used while the backend was down"
            resumed_at = time.monotonic()
            # Back on the restarted backend: once the gateway has seen its new endpoint, the spare gets nothing more.
            await eventually(
                lambda: traffic.since(resumed_at).count("ok") >= 8, within=60, what="answers after the restart"
            )
            spare_then, settled_at = await spare.requests(), time.monotonic()
            await eventually(
                lambda: traffic.since(settled_at).count("ok") >= 8, within=60, what="answers on the restarted backend"
            )
            await traffic.stop()
            assert await spare.requests() == spare_then, "traffic stayed on the fallback after the restart"
            assert set(traffic.since(0)) == {"ok"}, set(traffic.since(0))
            assert max(seconds for _, _, seconds, _ in traffic.outcomes) < 30, "a request hung"
            await client.close()
    finally:
        spare.kill()
        await rows.close()
