"""Composition root of the datasets service: its HTTP API (the service consumes no events yet).

``llmops-datasets serve`` applies the migrations (as the database owner) and serves the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from fastapi import FastAPI

from llmops.bus import make_broker
from llmops.db import Database, upgrade
from llmops.http import Runtime, create_app
from llmops.logging import configure_logging
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
    settings = settings or DatasetsSettings()
    upgrade(MIGRATIONS, settings.migrations_db_url)


cli = typer.Typer(help="The datasets service.", no_args_is_help=True)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (default LLMOPS_DATASETS_HTTP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default LLMOPS_DATASETS_HTTP_PORT)")] = None,
    migrations: Annotated[bool, typer.Option(help="apply the database migrations first")] = True,
) -> None:
    """Run the datasets service's API."""
    import uvicorn

    configure_logging()
    settings = DatasetsSettings()
    if migrations:
        migrate(settings)
    service = DatasetsService(settings)
    uvicorn.run(service.app, host=host or settings.http_host, port=port or settings.http_port, log_config=None)


@cli.command("migrate")
def migrate_command() -> None:
    """Apply the database migrations (as the database owner)."""
    configure_logging()
    migrate()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
