"""``llmops routes ...``: set a route (the ``model`` name applications ask the gateway for), split its traffic, add
or remove a shadow, roll it back, and list, show and trace its versions."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import AsJson, api_path, print_items, when
from llmops.client import Token, echo_json, err, out
from llmops_deployment.cli.common import ProjectOpt, ReasonOpt, Url, check, connect

routes_app = typer.Typer(
    help="Routes: the model names applications call. set, split (canary), shadow, rollback, list, show, history.",
    no_args_is_help=True,
)

RouteName = Annotated[str, typer.Argument(help="the route (the model name applications ask for)")]
DeploymentArg = Annotated[str, typer.Argument(help="the deployment's id")]


def parse_target(value: str) -> dict[str, Any]:
    """``DEPLOYMENT[=WEIGHT]`` (weight 1 when left out) as a route target."""
    deployment_id, sep, weight = value.partition("=")
    if not deployment_id:
        raise typer.BadParameter(f"{value!r}: expected DEPLOYMENT[=WEIGHT]")
    try:
        number = float(weight) if sep else 1.0
    except ValueError:
        raise typer.BadParameter(f"{value!r}: the weight after = must be a number") from None
    return {"deployment_id": deployment_id, "weight": number}


def number(value: float) -> str:
    return f"{value:.4g}"


def route_table(route: dict[str, Any]) -> Table:
    """A route's deployments: its targets with their weights and shares, its shadows and its fallbacks in order."""
    sticky = " · sticky" if route["sticky"] else ""
    title = f"route {escape(route['name'])} v{route['version']}{sticky} · {escape(route['updated_by'])}"
    table = Table(title=f"{title} {when(route['updated_at'])}")
    for column in ("role", "deployment", "id", "status", "weight", "share"):
        table.add_column(column, justify="right" if column in ("weight", "share") else "left")
    for target in route["targets"]:
        share = f"{number(target['percent'])}%"
        table.add_row("target", *deployment_cells(target), number(target["weight"]), share)
    for role in ("shadows", "fallbacks"):
        for position, deployment in enumerate(route[role], start=1):
            label = "shadow" if role == "shadows" else f"fallback {position}"
            table.add_row(label, *deployment_cells(deployment), "", "")
    return table


def deployment_cells(deployment: dict[str, Any]) -> tuple[str, str, str]:
    status = deployment["status"]
    shown = status if status == "ready" else f"[yellow]{status}[/yellow]"
    return escape(deployment["name"] or "-"), deployment["deployment_id"], shown


def routes_table(routes: list[dict[str, Any]]) -> Table:
    table = Table(title="routes")
    for column in ("name", "version", "targets", "shadows", "fallbacks", "sticky", "updated"):
        table.add_column(column)
    for route in routes:
        targets = ", ".join(f"{t['name'] or t['deployment_id']} {number(t['percent'])}%" for t in route["targets"])
        table.add_row(
            escape(route["name"]),
            str(route["version"]),
            escape(targets),
            escape(", ".join(s["name"] or s["deployment_id"] for s in route["shadows"])),
            escape(", ".join(f["name"] or f["deployment_id"] for f in route["fallbacks"])),
            "yes" if route["sticky"] else "",
            when(route["updated_at"]),
        )
    return table


def history_table(name: str, versions: list[dict[str, Any]]) -> Table:
    table = Table(title=f"history of route {escape(name)}")
    for column in ("version", "change", "targets", "shadows", "fallbacks", "sticky", "by", "at", "reason"):
        table.add_column(column)
    for v in versions:
        change = v["change"] + (f" to v{v['restored_version']}" if v["restored_version"] else "")
        targets = ", ".join(f"{t['deployment_id'][:8]}={number(t['weight'])}" for t in v["targets"])
        table.add_row(
            str(v["version"]),
            change,
            targets,
            ", ".join(d[:8] for d in v["shadows"]),
            ", ".join(d[:8] for d in v["fallbacks"]),
            "yes" if v["sticky"] else "",
            escape(v["actor"]),
            when(v["at"]),
            escape(v["reason"]),
        )
    return table


def show_route(route: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(route)
    else:
        out.print(route_table(route))


@routes_app.command("set")
def set_route(
    project: ProjectOpt,
    name: RouteName,
    target: Annotated[
        list[str], typer.Option("--target", "-t", help="DEPLOYMENT[=WEIGHT] (relative weight, default 1); repeat")
    ],
    shadow: Annotated[list[str] | None, typer.Option("--shadow", help="a deployment given copies; repeat")] = None,
    fallback: Annotated[
        list[str] | None, typer.Option("--fallback", help="a deployment tried when targets fail, in order; repeat")
    ] = None,
    sticky: Annotated[
        bool, typer.Option("--sticky", help="the same user or key always reaches the same target")
    ] = False,
    reason: ReasonOpt = "",
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set a route's targets, shadows, fallbacks and stickiness (a new route, or its next version)."""
    body = {
        "targets": [parse_target(t) for t in target],
        "shadows": shadow or [],
        "fallbacks": fallback or [],
        "sticky": sticky,
        "reason": reason,
    }
    with connect(url, token) as client:
        route = check(client.put(api_path(project, "routes", name), json=body)).json()
    show_route(route, as_json)


@routes_app.command("split")
def split(
    project: ProjectOpt,
    name: RouteName,
    deployment: DeploymentArg,
    percent: Annotated[float, typer.Option("--percent", min=0, max=100, help="its share of the traffic")],
    reason: ReasonOpt = "",
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Give a deployment PERCENT% of the route's traffic (a canary); the other targets keep their ratios."""
    body = {"deployment_id": deployment, "percent": percent, "reason": reason}
    with connect(url, token) as client:
        route = check(client.post(api_path(project, "routes", name, "split"), json=body)).json()
    show_route(route, as_json)


@routes_app.command("shadow")
def shadow_route(
    project: ProjectOpt,
    name: RouteName,
    deployment: DeploymentArg,
    off: Annotated[bool, typer.Option("--off", help="stop sending it copies")] = False,
    reason: ReasonOpt = "",
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Send a deployment copies of the route's requests (its answers are recorded, never returned), or stop."""
    body = {"deployment_id": deployment, "enabled": not off, "reason": reason}
    with connect(url, token) as client:
        route = check(client.post(api_path(project, "routes", name, "shadow"), json=body)).json()
    show_route(route, as_json)


@routes_app.command("rollback")
def rollback(
    project: ProjectOpt,
    name: RouteName,
    to: Annotated[
        int | None, typer.Option("--to", min=1, help="the version to restore (default: the previous)")
    ] = None,
    reason: ReasonOpt = "",
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Restore the route as it was at an earlier version (it becomes the next version); the gateway applies it to
    the next request."""
    body: dict[str, Any] = {"reason": reason} | ({"to_version": to} if to is not None else {})
    with connect(url, token) as client:
        route = check(client.post(api_path(project, "routes", name, "rollback"), json=body)).json()
    if not as_json:
        err.print(f"route {escape(name)} is now v{route['version']}")
    show_route(route, as_json)


@routes_app.command("list")
def list_routes(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's routes, with each target's share."""
    with connect(url, token) as client:
        routes = check(client.get(api_path(project, "routes"), params={"limit": 500})).json()
    print_items(routes, as_json, routes_table, "no routes yet")


@routes_app.command("show")
def show(project: ProjectOpt, name: RouteName, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """A route with its deployments' names, status and shares."""
    with connect(url, token) as client:
        route = check(client.get(api_path(project, "routes", name))).json()
    show_route(route, as_json)


@routes_app.command("history")
def history(
    project: ProjectOpt, name: RouteName, as_json: AsJson = False, url: Url = None, token: Token = None
) -> None:
    """A route's versions, newest first: what changed, who changed it and why."""
    with connect(url, token) as client:
        versions = check(client.get(api_path(project, "routes", name, "history"), params={"limit": 500})).json()
    print_items(versions, as_json, lambda items: history_table(name, items), "no versions")
