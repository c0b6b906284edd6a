"""Composition root of the datasets service: its HTTP API and the consumer of import requests, in one process.

``llmops-datasets serve`` applies the migrations (as the database owner) and serves the API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from llmops.bus import Consumer, make_broker
from llmops.db import Database, upgrade
from llmops.entrypoint import service_cli
from llmops.http import create_app
from llmops.memory import tune_malloc
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops_datasets.api import router
from llmops_datasets.consumers import imports_consumer
from llmops_datasets.formats import CONTENT_TYPES
from llmops_datasets.parallel import IngestPool
from llmops_datasets.settings import DatasetsSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class DatasetsService:
    """The parts of a running datasets service, for `serve`, the demo and the tests."""

    def __init__(self, settings: DatasetsSettings | None = None) -> None:
        self.settings = settings or DatasetsSettings()
        tune_malloc(  # before the service starts its threads
            arenas=self.settings.malloc_arenas or None, mmap_threshold=self.settings.malloc_mmap_threshold or None
        )
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="datasets"),
            ObjectStore(self.settings.s3),
        )
        self.app: FastAPI = create_app(
            self.runtime,
            title="llmops datasets",
            routers=[router],
            on_start=[self._start_workers],
            on_stop=[self._stop_workers],
            upload_media_types=CONTENT_TYPES,
        )
        self.app.state.settings = self.settings
        self.app.state.ingest_pool = None
        self.consumer: Consumer = imports_consumer(
            self.settings, self.runtime, self.runtime.broker, lambda: self.app.state.ingest_pool
        )

    async def start(self) -> None:
        await self.runtime.start()
        await self._start_workers(self.runtime)

    async def stop(self) -> None:
        await self._stop_workers(self.runtime)
        await self.runtime.stop()

    async def _start_workers(self, _: Runtime) -> None:
        if self.settings.ingest_workers and self.app.state.ingest_pool is None:
            self.app.state.ingest_pool = IngestPool(self.settings.ingest_workers)

    async def _stop_workers(self, _: Runtime) -> None:
        pool, self.app.state.ingest_pool = self.app.state.ingest_pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)


def migrate(settings: DatasetsSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or DatasetsSettings()).migrations_db_url)


cli = service_cli("datasets", settings=DatasetsSettings, build=DatasetsService, migrate=migrate)
main = cli

if __name__ == "__main__":
    main()
