"""Composition root of the prompts service: its HTTP API (the service consumes no events yet).

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
from llmops_prompts.api import router
from llmops_prompts.settings import PromptsSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class PromptsService:
    """The parts of a running prompts service, for `serve`, the demo and the tests."""

    def __init__(self, settings: PromptsSettings | None = None) -> None:
        self.settings = settings or PromptsSettings()
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="prompts"),
        )
        self.app: FastAPI = create_app(self.runtime, title="llmops prompts", routers=[router])
        self.app.state.settings = self.settings

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def migrate(settings: PromptsSettings | None = None) -> None:
    settings = settings or PromptsSettings()
    upgrade(MIGRATIONS, settings.migrations_db_url)


cli = typer.Typer(help="The prompts service.", no_args_is_help=True)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (default LLMOPS_PROMPTS_HTTP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default LLMOPS_PROMPTS_HTTP_PORT)")] = None,
    migrations: Annotated[bool, typer.Option(help="apply the database migrations first")] = True,
) -> None:
    """Run the prompts service's API."""
    import uvicorn

    configure_logging()
    settings = PromptsSettings()
    if migrations:
        migrate(settings)
    service = PromptsService(settings)
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
