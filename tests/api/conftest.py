"""A service served over real HTTP (uvicorn on a free port, in a thread with its own event loop) on a fresh
database, as deployed: for tools that speak HTTP, such as schemathesis."""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from llmops.testing import service_database

#: Settings each service needs to stay off other tests' topics, groups and jobs.
RUN = uuid.uuid4().hex[:8]
OVERRIDES = {
    # the dead-letter API lists and replays a topic of this run (a fuzzed replay of the shared one would republish
    # other tests' dead letters to their topics)
    "audit": {
        "topics": [f"llmops.test.{RUN}.fuzz.security"],
        "consumer_group": f"audit-fuzz-{RUN}",
        "dead_letter_topic": f"llmops.test.{RUN}.fuzz.dead-letters",
    },
    "datasets": {
        "ingest_workers": 0,
        "max_upload_bytes": 2 * 1024 * 1024,
        "consumer_group": f"datasets-fuzz-{RUN}",
        "consumer_offset_reset": "latest",
    },
    "prompts": {},
    "training": {
        "consumer_group": f"training-fuzz-{RUN}",
        "consumer_offset_reset": "latest",
        "worker_group": f"training-worker-fuzz-{RUN}",
    },
    "evaluation": {
        "consumer_group": f"evaluation-fuzz-{RUN}",
        "consumer_offset_reset": "latest",
        "worker_group": f"evaluation-worker-fuzz-{RUN}",
    },
    "deployment": {
        "consumer_group": f"deployment-fuzz-{RUN}",
        "consumer_offset_reset": "latest",
        "worker_group": f"deployment-worker-fuzz-{RUN}",
    },
    "monitoring": {
        "consumer_group": f"monitoring-fuzz-{RUN}",
        "consumer_offset_reset": "latest",
        "records_group": f"monitoring-records-fuzz-{RUN}",
        "records_offset_reset": "latest",
        "records_prefix": f"test-monitoring/fuzz-{RUN}/records",
        "reports_prefix": f"test-monitoring/fuzz-{RUN}/drift",
        "drift_interval_seconds": 0,
        "records_workers": 0,  # the records consumer in the service's process: one process less under fuzz
    },
}


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``started`` once it listens (or gave up: it then exits)."""

    def __init__(self, config: uvicorn.Config, started: threading.Event) -> None:
        super().__init__(config)
        self._started = started

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self._started.set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(name: str, *, within: float = 120) -> Iterator[str]:
    """Serve the ``name`` service; yields its base URL once ``/healthz`` answers, stops it on exit."""
    app_module = importlib.import_module(f"llmops_{name}.app")
    settings_class = getattr(importlib.import_module(f"llmops_{name}.settings"), f"{name.capitalize()}Settings")
    service_class = getattr(app_module, f"{name.capitalize()}Service")
    port = _free_port()
    started, failed = threading.Event(), []
    server: list[uvicorn.Server] = []

    async def serve() -> None:
        if name == "audit":
            from llmops import infra
            from llmops.settings import KafkaSettings

            audit = OVERRIDES["audit"]
            await infra.ensure_topics(
                KafkaSettings().bootstrap_servers, [*audit["topics"], audit["dead_letter_topic"]], 1, 1
            )
        async with service_database(name, settings_class, outbox_poll_interval=0.05, **OVERRIDES[name]) as settings:
            await asyncio.to_thread(app_module.migrate, settings)
            service = service_class(settings)
            config = uvicorn.Config(service.app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
            server.append(_Server(config, started))
            await server[0].serve()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # told to the test below, which would otherwise wait in vain
            failed.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name=f"served-{name}", daemon=True)
    thread.start()
    if not started.wait(within) or failed or not server or not server[0].started:
        raise RuntimeError(f"the {name} service did not start: {failed!r}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server[0].should_exit = True
        thread.join(60)


@pytest.fixture
def serve(infra_up):
    """:func:`served`, for a test: ``with serve("prompts") as url: ...``."""
    return served
