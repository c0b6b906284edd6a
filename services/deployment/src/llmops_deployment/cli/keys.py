"""``llmops keys ...``: API keys for applications (create, list, revoke), the project's rate limits
(``keys limits show|set``) and token or cost budgets (``keys budget set|list``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import AsJson, api_path, print_items, when
from llmops.client import Token, echo_json, err, out, params
from llmops_deployment.cli.common import ProjectOpt, ReasonOpt, Url, check, connect

keys_app = typer.Typer(
    help="API keys for applications: create (the secret is shown once), list, revoke; the project's rate limits "
    "(keys limits show|set) and token/cost budgets (keys budget set|list).",
    no_args_is_help=True,
)
limits_app = typer.Typer(help="The project's requests and tokens per minute: show, set.", no_args_is_help=True)
budget_app = typer.Typer(
    help="Token and cost budgets per day, month or in total, for the project, a user or a key: set, list.",
    no_args_is_help=True,
)
keys_app.add_typer(limits_app, name="limits")
keys_app.add_typer(budget_app, name="budget")

Rpm = Annotated[int | None, typer.Option("--rpm", min=1, help="requests per minute")]
Tpm = Annotated[int | None, typer.Option("--tpm", min=1, help="tokens per minute")]


def limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def cost(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def keys_table(keys: list[dict[str, Any]]) -> Table:
    table = Table(title="API keys")
    for column in ("id", "name", "prefix", "rpm", "tpm", "created by", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        revoked = f"{when(key['revoked_at'])} by {key['revoked_by']}" if key["revoked_at"] else ""
        table.add_row(
            key["id"],
            escape(key["name"]),
            key["prefix"] + "…",
            limit(key["requests_per_minute"]),
            limit(key["tokens_per_minute"]),
            escape(key["created_by"]),
            when(key["created_at"]),
            escape(revoked),
        )
    return table


def budgets_table(budgets: list[dict[str, Any]]) -> Table:
    table = Table(title="budgets (current window)")
    for column in ("scope", "subject", "period", "window", "tokens used/max", "cost used/max", "reserved", "id"):
        table.add_column(column)
    for b in budgets:
        reserved = f"{b['reserved_tokens']} tok, {b['reserved_cost']:.4g}"
        table.add_row(
            b["scope"],
            escape(b["subject"]),
            b["period"],
            when(b["window_start"])[:10],
            f"{b['used_tokens']}/{limit(b['max_tokens'])}",
            f"{b['used_cost']:.4g}/{cost(b['max_cost'])}",
            reserved,
            b["id"],
        )
    return table


@keys_app.command("create")
def create(
    project: ProjectOpt,
    name: Annotated[str, typer.Argument(help="what the key is for (e.g. the application's name)")],
    rpm: Rpm = None,
    tpm: Tpm = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create an API key. Its secret is printed once, now: store it; the platform keeps only its hash."""
    body = {"name": name} | params(requests_per_minute=rpm, tokens_per_minute=tpm)
    with connect(url, token) as client:
        key = check(client.post(api_path(project, "keys"), json=body)).json()
    err.print(
        "[yellow]warning:[/yellow] this is the only time the key is shown: store it now "
        "(applications send it as `Authorization: Bearer <key>`)"
    )
    if as_json:
        echo_json(key)
    else:
        err.print(f"key {key['id']} ({escape(key['name'])}) created")
        typer.echo(key["secret"])


@keys_app.command("list")
def list_keys(
    project: ProjectOpt,
    all_keys: Annotated[bool, typer.Option("--all", help="revoked keys too")] = False,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """The project's API keys (never their secrets), newest first."""
    query = {"include_revoked": all_keys, "limit": 500}
    with connect(url, token) as client:
        keys = check(client.get(api_path(project, "keys"), params=query)).json()
    print_items(keys, as_json, keys_table, "no API keys")


@keys_app.command("revoke")
def revoke(
    project: ProjectOpt,
    key_id: Annotated[str, typer.Argument(help="the key's id (as `llmops keys list` prints it)")],
    reason: ReasonOpt = "",
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Revoke an API key: gateways refuse it once their key cache expires (seconds)."""
    with connect(url, token) as client:
        key = check(client.post(api_path(project, "keys", key_id, "revoke"), json={"reason": reason})).json()
    if as_json:
        echo_json(key)
    else:
        err.print(f"key {key['id']} ({escape(key['name'])}) revoked")


@limits_app.command("show")
def show_limits(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's requests and tokens per minute (all its keys and users together)."""
    with connect(url, token) as client:
        limits = check(client.get(api_path(project, "limits"))).json()
    if as_json:
        echo_json(limits)
    else:
        out.print(
            f"project {escape(limits['project'])}: {limit(limits['requests_per_minute'])} requests/min, "
            f"{limit(limits['tokens_per_minute'])} tokens/min"
        )


@limits_app.command("set")
def set_limits(
    project: ProjectOpt, rpm: Rpm = None, tpm: Tpm = None, as_json: AsJson = False, url: Url = None, token: Token = None
) -> None:
    """Set the project's limits; a limit left out is removed (the gateway's default applies)."""
    body = {"requests_per_minute": rpm, "tokens_per_minute": tpm}
    with connect(url, token) as client:
        limits = check(client.put(api_path(project, "limits"), json=body)).json()
    if as_json:
        echo_json(limits)
    else:
        out.print(f"project {escape(project)}: {limit(rpm)} requests/min, {limit(tpm)} tokens/min")


@budget_app.command("set")
def set_budget(
    project: ProjectOpt,
    period: Annotated[str, typer.Option("--period", help="day, month or total")],
    scope: Annotated[str, typer.Option("--scope", help="project, user or key")] = "project",
    subject: Annotated[str | None, typer.Option("--subject", help="the user id or key id (not for project)")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=0, help="tokens per period")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", min=0, help="cost per period")] = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set (or change) a budget; the gateway refuses requests that would pass it (429)."""
    body = {"scope": scope, "period": period} | params(subject=subject, max_tokens=max_tokens, max_cost=max_cost)
    with connect(url, token) as client:
        budget = check(client.put(api_path(project, "budgets"), json=body)).json()
    print_items([budget], as_json, budgets_table, "")


@budget_app.command("list")
def list_budgets(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's budgets with what their current windows have used and hold reserved."""
    with connect(url, token) as client:
        budgets = check(client.get(api_path(project, "budgets"))).json()
    print_items(budgets, as_json, budgets_table, "no budgets")
