"""The ``llmops`` command line: local infrastructure and tokens now; each service adds its commands."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from llmops.dlq_cli import app as dlq_app
from llmops.logging import configure_logging
from llmops.tokens import Role, issue_token

app = typer.Typer(help="The LLMOps platform's command line.", no_args_is_help=True)
infra_app = typer.Typer(help="Start, stop and inspect the local Kafka, Postgres and S3 store.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for local use.", no_args_is_help=True)
app.add_typer(infra_app, name="infra")
app.add_typer(token_app, name="token")
app.add_typer(dlq_app, name="dlq")

console = Console(stderr=True)


@infra_app.command("up")
def infra_up() -> None:
    """Provision (first time only), start and wait for Kafka, Postgres and the S3 store; create topics."""
    from llmops import infra

    try:
        infra.up()
    except infra.InfraError as exc:
        console.print(f"[red]infra up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    _print_status(infra.status())


@infra_app.command("down")
def infra_down() -> None:
    """Stop the local infrastructure (data is kept in the cache)."""
    from llmops import infra

    infra.down()
    console.print("infrastructure stopped")


@infra_app.command("status")
def infra_status() -> None:
    """Show each part's health; exit 1 when one is not healthy."""
    from llmops import infra

    statuses = infra.status()
    _print_status(statuses)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@infra_app.command("topics")
def infra_topics() -> None:
    """Create the platform's topics on the configured Kafka (for clusters not started by `infra up`)."""
    import asyncio

    from llmops.infra import ensure_topics
    from llmops.settings import KafkaSettings
    from llmops_schemas.topics import ALL_TOPICS

    kafka = KafkaSettings()
    asyncio.run(ensure_topics(kafka.bootstrap_servers, list(ALL_TOPICS), kafka.partitions, kafka.replication_factor))
    console.print(f"{len(ALL_TOPICS)} topics present on {kafka.bootstrap_servers}")


def _print_status(statuses) -> None:
    table = Table("component", "healthy", "detail")
    for s in statuses:
        table.add_row(s.name, "[green]yes[/green]" if s.healthy else "[red]no[/red]", s.detail)
    Console().print(table)


@app.command("up")
def stack_up(
    parts: Annotated[list[str] | None, typer.Argument(help="parts to start (default all); see `llmops ps`")] = None,
    infra: Annotated[bool, typer.Option(help="start the local infrastructure first (--no-infra: it runs)")] = True,
    timeout: Annotated[float, typer.Option(help="seconds each part may take to be ready")] = 300.0,
) -> None:
    """Start the platform: every service, the gateway and a CPU worker of each kind, each in its own process;
    wait until each is ready and print where they listen and log. What runs already is left alone."""
    from llmops import infra as local_infra

    stack = _stack_or_exit(parts)
    try:
        if infra:
            local_infra.up()
        stack.up(parts, log=lambda message: console.print(f"[dim]{message}[/dim]"), timeout=timeout)
    except local_infra.InfraError as exc:
        console.print(f"[red]up failed:[/red] {exc}")
        console.print("what started keeps running: `llmops ps` shows it, `llmops down` stops it")
        raise typer.Exit(1) from exc
    _print_stack(stack)


@app.command("down")
def stack_down(
    parts: Annotated[list[str] | None, typer.Argument(help="parts to stop (default all)")] = None,
) -> None:
    """Stop the platform's processes gracefully (the gateway and workers first); the infrastructure keeps running
    (`llmops infra down` stops it)."""
    stack = _stack_or_exit(parts)
    stopped = stack.down(parts, log=lambda message: console.print(f"[dim]{message}[/dim]"))
    console.print(f"stopped {len(stopped)}: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("ps")
def stack_ps() -> None:
    """What runs of the platform: each part's state (ready, starting, stopped), pid, URL and log file."""
    _print_stack(_stack_or_exit(None))


def _stack_or_exit(parts: list[str] | None):
    from llmops.stack import Stack

    stack = Stack()
    try:
        stack.select(parts)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="PARTS") from exc
    return stack


def _print_stack(stack) -> None:
    colour = {"ready": "green", "starting": "yellow", "stopped": "red"}
    table = Table("part", "state", "pid", "url", "log")
    for row in stack.status():
        table.add_row(
            row.name,
            f"[{colour[row.state]}]{row.state}[/{colour[row.state]}]",
            str(row.pid or "-"),
            row.where,
            str(row.log_file),
        )
    Console(width=200).print(table)


@token_app.command("issue")
def token_issue(
    role: Annotated[list[Role], typer.Option("--role", "-r", help="a role; repeat for several")],
    project: Annotated[list[str], typer.Option("--project", "-p", help="a project, or * for all; repeatable")],
    subject: Annotated[str, typer.Option(help="who the token is for")] = "local-user",
    ttl: Annotated[int | None, typer.Option(help="lifetime in seconds")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the claims beside the token")] = False,
) -> None:
    """Sign a local HS256 token (refused outside local development when the secret is the default)."""
    token = issue_token(subject, list(role), list(project), ttl_seconds=ttl)
    if as_json:
        typer.echo(json.dumps({"token": token, "subject": subject, "roles": role, "projects": project}))
    else:
        typer.echo(token)


def _add_service_commands() -> None:
    """Each installed service adds its commands through the ``llmops.cli`` entry-point group."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="llmops.cli"):
        app.add_typer(entry.load(), name=entry.name)


def main() -> None:
    configure_logging("WARNING")
    _add_service_commands()
    app()
