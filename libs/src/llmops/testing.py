"""Helpers for the services' tests: serve an app over real HTTP inside the test's event loop, and run the installed
``llmops`` command against it, and issue the bearer tokens they call with; wait for a consumer group to catch up
(:func:`caught_up`) and read a topic to its end (:func:`read_to_end`); run schemathesis against an OpenAPI
document; cut and restore a worker's link to the object store (:class:`CuttableLink`) for fault tests.

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
import subprocess
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


async def read_to_end(topic: str, *, within: float = 60, kafka: Any = None) -> list[Any]:
    """Every record of ``topic`` from its beginning up to its end when called (``ConsumerRecord`` objects, each
    partition's in order): what was published before the call, all of it, however slowly the broker answers (a read
    that stopped at the first quiet second returned part of a busy topic). ``kafka`` names another broker."""
    import time

    from aiokafka import TopicPartition

    from llmops.bus.broker import make_admin, make_consumer

    reader = make_consumer(kafka, client_id="llmops-read-to-end", enable_auto_commit=False)
    admin = make_admin(kafka, client_id="llmops-read-to-end")
    await reader.start()
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        if described["error_code"]:
            raise AssertionError(f"read_to_end: topic {topic} not found (error {described['error_code']})")
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        ends = await reader.end_offsets(partitions)
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + within
        left = {tp for tp, end in ends.items() if end > 0}
        while left:
            if time.monotonic() > deadline:
                raise AssertionError(f"read_to_end: {topic} not read to its end within {within} s")
            for tp, batch in (await reader.getmany(*left, timeout_ms=1000)).items():
                records += [r for r in batch if r.offset < ends[tp]]
            left = {tp for tp in left if await reader.position(tp) < ends[tp]}
        return records
    finally:
        await reader.stop()
        await admin.close()


def schemathesis(
    openapi_url: str, *, config: Path, authorization: str, seed: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run the installed schemathesis (``st``) with all its checks against the OpenAPI document at ``openapi_url``,
    with ``config`` (its folder on ``PYTHONPATH``, for the hooks it names) and an ``Authorization`` header.
    ``LLMOPS_FUZZ_SEED`` overrides ``seed`` (fixed by default, so that CI is reproducible; set it to explore) and
    ``LLMOPS_FUZZ_EXAMPLES`` the config's examples per operation; the report is the output."""
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        openapi_url,
        "--header",
        f"Authorization: {authorization}",
        "--seed",
        os.environ.get("LLMOPS_FUZZ_SEED", seed),
        "--no-color",
    ]
    if examples := os.environ.get("LLMOPS_FUZZ_EXAMPLES"):
        command += ["--max-examples", examples]
    env = {**os.environ, "PYTHONPATH": str(config.parent)}
    return subprocess.run(command, capture_output=True, text=True, timeout=840, cwd=cwd, env=env, check=False)


class CuttableLink:
    """A TCP forwarder to ``host:port`` on a port of its own, for fault tests: :meth:`cut` closes its listening socket
    and every connection through it (a client then meets "connection refused", as when the server is down), and
    :meth:`restore` listens again on the same port. Use as ``async with CuttableLink(host, port) as link``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    async def __aenter__(self) -> CuttableLink:
        await self.restore()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.cut()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers -= {writer, upstream_writer}


@asynccontextmanager
async def running(worker: Any) -> AsyncIterator[Any]:
    """A worker (training, evaluation, serving: ``run()``, ``ready``, ``stop()``) running and ready for the block;
    stopped after it."""
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 60)
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)


@asynccontextmanager
async def worker_behind_a_link(worker_class: Any, settings: Any, *, name: str) -> AsyncIterator[CuttableLink]:
    """A worker (training, evaluation) whose only way to the object store is a :class:`CuttableLink`, running and
    ready; the link, to cut and restore. Stopped at the end."""
    host, _, port = settings.s3.endpoint.rpartition(":")
    async with CuttableLink(host, int(port)) as link:
        s3 = settings.s3.model_copy(update={"endpoint": link.address})
        async with running(worker_class(settings.model_copy(update={"s3": s3}), name=name)):
            yield link
