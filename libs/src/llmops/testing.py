"""Helpers for the services' tests: serve an app over real HTTP inside the test's event loop, and run the installed
``llmops`` command against it, and issue the bearer tokens they call with.

Only tests and the demo import this module (it needs no pytest itself). A fixture serving an app is three lines::

    @pytest.fixture
    async def server(audit):
        async with serve(audit.app) as url:
            yield url
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import uvicorn

#: The ``llmops`` command installed beside the running interpreter (the real entry point, as users run it).
LLMOPS = str(Path(sys.executable).parent / "llmops")
#: Seconds one run of the command may take (an upload of tens of megabytes included).
LLMOPS_TIMEOUT = 180


def bearer(*roles: Any, projects: Iterable[str] = ("p1",), subject: str = "tester", **token: Any) -> dict[str, str]:
    """An ``Authorization`` header carrying a token issued locally (``llmops.tokens.issue_token``) for ``subject``
    with ``roles`` in ``projects``; ``token`` passes on (``ttl_seconds``, ``settings``). A service's tests fix their
    own defaults with :func:`functools.partial`."""
    from llmops.tokens import issue_token

    return {"authorization": f"Bearer {issue_token(subject, list(roles), list(projects), **token)}"}


@asynccontextmanager
async def serve(app: Any, *, startup_timeout: float = 10) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free local port, in the running event loop (where the service's
    runtime lives, so the app's database pool and producer work as in the service); yields its base URL.

    The app's lifespan is not run: the test's fixtures start and stop the service's runtime.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    served = uvicorn.Server(config)
    task = asyncio.create_task(served.serve(sockets=[sock]))
    async with asyncio.timeout(startup_timeout):
        while not served.started:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        served.should_exit = True
        await task
        sock.close()


@contextmanager
def serve_in_thread(app: Any, *, startup_timeout: float = 20) -> Iterator[str]:
    """Serve the ASGI ``app`` (its lifespan run) with uvicorn on a free local port, on a thread with an event loop of
    its own; yields its base URL. For an app that owns its parts (the gateway): served in the caller's own loop, each
    answer to a client in that loop would wait out a delayed ACK (about 40 ms)."""
    import threading
    import time

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


async def llmops(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the installed ``llmops`` command with ``args`` in a subprocess, without blocking the event loop (which
    serves the app it calls); ``env`` is added to this process's environment, with a wide terminal (200 columns)
    so that tables are not wrapped. Returns the exit code, stdout and stderr; a run over :data:`LLMOPS_TIMEOUT`
    seconds fails."""
    process = await asyncio.create_subprocess_exec(
        LLMOPS,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), LLMOPS_TIMEOUT)
    return process.returncode, stdout.decode(), stderr.decode()


@asynccontextmanager
async def service_database(
    service: str, settings_class: type, *, postgres: Any = None, **overrides: Any
) -> AsyncIterator[Any]:
    """Settings of ``service`` pointing at a fresh database owned by its owner role and used through its runtime
    role, as deployed; migrations are the caller's to run. The database is dropped afterwards. ``postgres`` (a
    ``PostgresSettings``) names another server than the shared one, e.g. a fault test's private one."""
    import uuid

    from llmops.db import create_database, drop_database
    from llmops.settings import PostgresSettings

    pg = postgres or PostgresSettings()
    owner, app = f"llmops_{service}", f"llmops_{service}_app"
    name = f"llmops_{service}_test_{uuid.uuid4().hex[:12]}"
    await create_database(name, pg, owner=owner, connect=(app,))
    try:
        yield settings_class(
            database_url=pg.url(name, user=app),
            migrations_database_url=pg.url(name, user=owner),
            postgres=pg,
            **overrides,
        )
    finally:
        await drop_database(name, pg)


async def caught_up(group: str, topics: list[str], *, within: float = 60, kafka: Any = None) -> None:
    """Wait until consumer ``group`` has committed offsets at the end of every partition of ``topics``: everything
    published before the call has been processed (what a fixed sleep would only hope for). ``kafka`` (a
    ``KafkaSettings``) names another broker than the shared one."""
    import time

    from aiokafka import TopicPartition

    from llmops.bus.broker import make_admin, make_consumer

    probe, admin = make_consumer(kafka, client_id="llmops-caught-up"), make_admin(kafka, client_id="llmops-caught-up")
    await probe.start()
    await admin.start()
    try:
        # The admin client's metadata, not the probe's: a fresh consumer knows no topic's partitions until it
        # subscribes, so asking it gave none, and a wait on "every partition" of nothing returned at once.
        described = await admin.describe_topics(list(topics))
        partitions = [
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if not t["error_code"]
            for p in t["partitions"]
        ]
        found = {tp.topic for tp in partitions}
        if found != set(topics):
            raise AssertionError(f"caught_up: no partitions found for {', '.join(sorted(set(topics) - found))}")
        ends = await probe.end_offsets(partitions)
        deadline = time.monotonic() + within
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            if all(end == 0 or (committed.get(tp) and committed[tp].offset >= end) for tp, end in ends.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"consumer group {group} did not catch up with {', '.join(topics)}")
            await asyncio.sleep(0.2)
    finally:
        await probe.stop()
        await admin.close()
