"""A process that starts while the object store or Kafka is out of reach (restarting, say) waits for it, saying so,
and starts once it is back, instead of exiting; it gives up after ``startup_wait_seconds``, and an error that is no
outage is raised at once. The dependency is reached through a ``CuttableLink`` the test cuts and restores."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from llmops.bus import make_broker
from llmops.db import Database
from llmops.runtime import Runtime
from llmops.settings import KafkaSettings, S3Settings, ServiceSettings
from llmops.storage import ObjectStore
from llmops.testing import CuttableLink

pytestmark = pytest.mark.integration


class Settings(ServiceSettings):
    service: str = "starting"


def runtime_behind(link: CuttableLink, database_url: str, *, wait: float, bucket: str | None = None) -> Runtime:
    s3 = S3Settings().model_copy(update={"endpoint": link.address})
    return Runtime(
        Settings(database_url=database_url, startup_wait_seconds=wait),
        Database(database_url),
        make_broker(client_id="tests-runtime-start"),
        ObjectStore(s3, bucket=bucket),
        run_relay=False,
    )


def store_link() -> CuttableLink:
    host, _, port = S3Settings().endpoint.rpartition(":")
    return CuttableLink(host, int(port))


def waits(logs: list[dict]) -> list[dict]:
    return [line for line in logs if line["event"] == "runtime.waiting_for"]


async def waits_saying_so_then_starts(runtime: Runtime, link: CuttableLink) -> list[dict]:
    """Start ``runtime`` with ``link`` cut: it must try twice (logged) without giving up, then start once the link is
    restored; the wait lines."""
    with capture_logs() as logs:
        start = asyncio.create_task(runtime.start())
        deadline = time.monotonic() + 60
        while len(waits(logs)) < 2:  # a second try: it keeps waiting, it did not give up
            assert not start.done(), start.exception()
            assert time.monotonic() < deadline, "no wait was logged"
            await asyncio.sleep(0.05)
        assert not start.done()
        await link.restore()
        await asyncio.wait_for(start, 60)
    return waits(logs)


class TestAStartWhileTheObjectStoreIsAway:
    async def test_waits_saying_so_and_starts_once_the_store_is_back(self, database_url):
        async with store_link() as link:
            await link.cut()
            runtime = runtime_behind(link, database_url, wait=120)
            try:
                told = await waits_saying_so_then_starts(runtime, link)
                await runtime.store.ping()  # started: the bucket is there, reached through the restored link
            finally:
                await runtime.stop()
        assert {line["dependency"] for line in told} == {"object store"}
        assert all("MaxRetryError" in line["error"] or "Connection" in line["error"] for line in told)

    async def test_gives_up_after_its_startup_wait(self, database_url):
        async with store_link() as link:
            await link.cut()
            runtime = runtime_behind(link, database_url, wait=1.0)
            began = time.monotonic()
            with pytest.raises(Exception) as raised:
                await runtime.start()
            await runtime.stop()
        assert "MaxRetryError" in repr(raised.value) or "Connection" in repr(raised.value)
        assert time.monotonic() - began < 60

    async def test_an_error_that_is_no_outage_is_raised_at_once(self, database_url):
        async with store_link() as link:
            runtime = runtime_behind(link, database_url, wait=120, bucket="Not_A_Bucket_Name")
            with capture_logs() as logs, pytest.raises(ValueError, match=r"[Bb]ucket"):
                await runtime.start()
            await runtime.stop()
        assert waits(logs) == []


class TestAStartWhileKafkaIsAway:
    async def test_waits_saying_so_and_starts_its_broker_and_outbox_relay_once_kafka_is_back(self, database_url):
        host, _, port = KafkaSettings().bootstrap_servers.split(",")[0].rpartition(":")
        async with CuttableLink(host, int(port)) as link:
            await link.cut()
            kafka = KafkaSettings(bootstrap_servers=link.address)
            runtime = Runtime(
                Settings(database_url=database_url, kafka=kafka, startup_wait_seconds=120),
                Database(database_url),
                make_broker(kafka, client_id="tests-runtime-start"),
                None,
            )
            try:
                told = await waits_saying_so_then_starts(runtime, link)
                assert runtime.relay is not None and runtime._producer is not None
            finally:
                await runtime.stop()
        assert {line["dependency"] for line in told} == {"kafka"}
        assert all("KafkaConnectionError" in line["error"] for line in told)
