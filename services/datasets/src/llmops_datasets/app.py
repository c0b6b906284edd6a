"""Composition root of the datasets service: its HTTP API (the service consumes no events yet).

``llmops-datasets serve`` applies the migrations (as the database owner) and serves the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from llmops.bus import make_broker
from llmops.db import Database, upgrade
from llmops.entrypoint import service_cli
from llmops.http import Runtime, create_app
from llmops.storage import ObjectStore
from llmops_datasets.api import router
from llmops_datasets.settings import DatasetsSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class DatasetsService:
    """The parts of a running datasets service, for `serve`, the demo and the tests."""

    def __init__(self, settings: DatasetsSettings | None = None) -> None:
        self.settings = settings or DatasetsSettings()
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="datasets"),
            ObjectStore(self.settings.s3),
        )
        self.app: FastAPI = create_app(self.runtime, title="llmops datasets", routers=[router])
        self.app.state.settings = self.settings

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def migrate(settings: DatasetsSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or DatasetsSettings()).migrations_db_url)


cli = service_cli("datasets", settings=DatasetsSettings, build=DatasetsService, migrate=migrate)
main = cli

if __name__ == "__main__":
    main()
