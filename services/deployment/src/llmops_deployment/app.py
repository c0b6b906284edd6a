"""Composition root of the deployment service: HTTP API (deployments, routes, API keys, budgets, lineage) and its
consumers in one process; ``llmops-deployment worker --pool cpu|gpu`` runs a serving worker of one pool and
``llmops-deployment gateway`` the inference gateway (stateless, any number of replicas).

``llmops-deployment serve`` applies the migrations (as the database owner) and serves the API.
"""

# No `from __future__ import annotations` here: Typer reads the commands' annotations.

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from fastapi import FastAPI

from llmops.bus import Consumer, make_broker
from llmops.db import Database, upgrade
from llmops.entrypoint import service_cli
from llmops.http import create_app
from llmops.logging import configure_logging
from llmops.runtime import Runtime
from llmops.storage import ObjectStore
from llmops.tracing import configure_tracing
from llmops_deployment import access_api, api
from llmops_deployment.consumers import inference_consumer, projections_consumer
from llmops_deployment.settings import DeploymentSettings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class DeploymentService:
    """The parts of a running deployment service, for `serve`, the demo and the tests."""

    def __init__(self, settings: DeploymentSettings | None = None) -> None:
        self.settings = settings or DeploymentSettings()
        self.runtime = Runtime(
            self.settings,
            Database(self.settings.db_url),
            make_broker(self.settings.kafka, client_id="deployment"),
            store=ObjectStore(self.settings.s3),
        )
        self.consumer: Consumer = projections_consumer(self.settings, self.runtime)
        self.inference_consumer: Consumer = inference_consumer(self.settings, self.runtime)
        self.app: FastAPI = create_app(self.runtime, title="llmops deployment", routers=[api.router, access_api.router])
        self.app.state.settings = self.settings

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def migrate(settings: DeploymentSettings | None = None) -> None:
    upgrade(MIGRATIONS, (settings or DeploymentSettings()).migrations_db_url)


cli = service_cli(
    "deployment", settings=DeploymentSettings, build=DeploymentService, migrate=migrate, runs_without_http=True
)


@cli.command()
def worker(
    pool: Annotated[
        str | None, typer.Option(help="the pool whose deployments to serve (default LLMOPS_DEPLOYMENT_POOL)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="this worker's name (default host-pid-random)")] = None,
) -> None:
    """Run a serving worker: takes the deployments of its pool from Kafka and runs their model servers."""
    from llmops_deployment.worker import ServingWorker

    configure_logging()
    configure_tracing("deployment-worker")
    settings = DeploymentSettings()
    if pool is not None:
        settings = settings.model_copy(update={"pool": pool})
    serving_worker = ServingWorker(settings, name=name)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, serving_worker.stop)
        await serving_worker.run()

    asyncio.run(run())


@cli.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="listen address (default LLMOPS_DEPLOYMENT_GATEWAY_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default LLMOPS_DEPLOYMENT_GATEWAY_PORT)")] = None,
) -> None:
    """Run the inference gateway: the OpenAI-compatible API applications call (stateless; run any number)."""
    import uvicorn

    from llmops_deployment.gateway.app import build_gateway

    configure_logging()
    configure_tracing("gateway")
    settings = DeploymentSettings()
    uvicorn.run(
        build_gateway(settings),
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        log_config=None,
        access_log=False,
    )


main = cli

if __name__ == "__main__":
    main()
