"""The command line every service's process has: ``llmops-<service> serve`` and ``llmops-<service> migrate``."""

# No `from __future__ import annotations` here: Typer reads the options' annotations, which use local names.

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import typer

from llmops.logging import configure_logging
from llmops.tracing import configure_tracing


class RunnableService(Protocol):
    """What a service's composition root offers: its ASGI app, and start/stop without HTTP."""

    app: Any

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def service_cli(
    name: str,
    *,
    settings: Callable[[], Any],
    build: Callable[[Any], RunnableService],
    migrate: Callable[[Any], None],
    runs_without_http: bool = False,
) -> typer.Typer:
    """A Typer app with ``serve`` (migrations first, then the API under uvicorn; ``--no-http`` when the service
    also has consumers worth running alone) and ``migrate`` (as the database owner)."""
    cli = typer.Typer(help=f"The {name} service.", no_args_is_help=True)
    prefix = f"LLMOPS_{name.upper()}_"

    @cli.command()
    def serve(
        host: Annotated[str | None, typer.Option(help=f"listen address (default {prefix}HTTP_HOST)")] = None,
        port: Annotated[int | None, typer.Option(help=f"listen port (default {prefix}HTTP_PORT)")] = None,
        http: Annotated[
            bool, typer.Option(help="serve the HTTP API (--no-http: consumers only)", hidden=not runs_without_http)
        ] = True,
        migrations: Annotated[bool, typer.Option(help="apply the database migrations first")] = True,
    ) -> None:
        """Run the service."""
        configure_logging()
        config = _settings_or_exit(name, settings)
        if migrations:
            migrate(config)
        configure_tracing(name)
        service = build(config)
        if http:
            import uvicorn

            uvicorn.run(service.app, host=host or config.http_host, port=port or config.http_port, log_config=None)
            return
        if not runs_without_http:
            raise typer.BadParameter("this service has nothing to run without its HTTP API", param_hint="--no-http")

        async def run_forever() -> None:
            await service.start()
            try:
                await asyncio.Event().wait()
            finally:
                await service.stop()

        asyncio.run(run_forever())

    @cli.command("migrate")
    def migrate_command() -> None:
        """Apply the database migrations (as the database owner)."""
        configure_logging()
        migrate(_settings_or_exit(name, settings))

    return cli


def _settings_or_exit(name: str, settings: Callable[[], Any]) -> Any:
    """The service's settings, or exit 2 with each refused setting named (no traceback for a configuration error)."""
    from pydantic import ValidationError

    try:
        return settings()
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        typer.echo(f"llmops-{name}: refusing to start: {problems}", err=True)
        raise typer.Exit(2) from exc
