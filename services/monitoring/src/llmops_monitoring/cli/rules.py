"""``llmops monitor rules|policies|alerts``: alert rules, the policies that act on drift, alerts and anomalies, and
what is firing now."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import AsJson, api_path, key_values, print_items, when
from llmops.client import Token, echo_json, err, out, params
from llmops_monitoring.cli.common import ProjectOpt, Url, check, connect, number

rules_app = typer.Typer(help="Alert rules: a metric over a window against a threshold.", no_args_is_help=True)
policies_app = typer.Typer(
    help="Policies: on drift, an alert or an anomaly of a deployment or model, evaluate, retrain or notify.",
    no_args_is_help=True,
)
Name = Annotated[str, typer.Option("--name", help="its name in the project")]


def rules_table(rules: list[dict[str, Any]]) -> Table:
    table = Table(title="alert rules")
    for head in ("id", "name", "condition", "window", "for", "filters", "state", "last value"):
        table.add_column(head)
    colours = {"firing": "red", "pending": "yellow"}
    for r in rules:
        state = f"[{colours[r['state']]}]{r['state']}[/]" if r["state"] in colours else r["state"]
        table.add_row(
            r["id"],
            escape(r["name"]),
            escape(f"{r['metric']} {r['comparison']} {r['threshold']:g}"),
            f"{r['window_seconds']}s",
            f"{r['for_seconds']}s",
            escape(", ".join(f"{k}={v}" for k, v in r["filters"].items()) or "-"),
            state,
            number(r["last_value"]),
        )
    return table


@rules_app.command("create")
def create_rule(
    project: ProjectOpt,
    name: Name,
    metric: Annotated[str, typer.Option("--metric", help="e.g. error_rate, latency_p95, cost, flags.refusal")],
    comparison: Annotated[str, typer.Option("--when", help="one of > >= < <=")],
    threshold: Annotated[float, typer.Option("--threshold")],
    window: Annotated[int, typer.Option("--window", help="seconds of metrics read")] = 300,
    for_seconds: Annotated[int, typer.Option("--for", help="seconds it must hold before firing")] = 0,
    where: Annotated[list[str], typer.Option("--where", help="filter key=value (route, deployment_id, ...)")] = [],  # noqa: B006
    url: Url = None,
    token: Token = None,
) -> None:
    """Create an alert rule."""
    try:
        filters = {k: str(v) for k, v in key_values(where).items()}
    except ValueError as exc:
        raise typer.BadParameter(f"{exc} is not key=value", param_hint="--where") from None
    body = {
        "name": name,
        "metric": metric,
        "comparison": comparison,
        "threshold": threshold,
        "window_seconds": window,
        "for_seconds": for_seconds,
        "filters": filters,
    }
    with connect(url, token) as http:
        rule = check(http.post(api_path(project, "monitoring", "rules"), json=body)).json()
    out.print(rules_table([rule]))


@rules_app.command("list")
def list_rules(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's alert rules and their state."""
    with connect(url, token) as http:
        rules = check(http.get(api_path(project, "monitoring", "rules"))).json()
    print_items(rules, as_json, rules_table, "no alert rules")


@rules_app.command("delete")
def delete_rule(
    project: ProjectOpt, rule_id: Annotated[str, typer.Argument()], url: Url = None, token: Token = None
) -> None:
    """Delete an alert rule."""
    with connect(url, token) as http:
        check(http.delete(api_path(project, "monitoring", "rules", rule_id)))
    err.print(f"rule {rule_id} deleted")


def policies_table(policies: list[dict[str, Any]]) -> Table:
    table = Table(title="policies")
    for head in ("id", "name", "watches", "on", "does", "cool-down", "last triggered"):
        table.add_column(head)
    for p in policies:
        watches = f"deployment {p['deployment_id']}" if p["deployment_id"] else f"model {p['model_name']}"
        does = {"evaluate": f"evaluate suite {p['suite_id']}", "retrain": f"retrain with {p['dataset_id']}"}
        table.add_row(
            p["id"],
            escape(p["name"]),
            escape(watches),
            p["on"],
            escape(does.get(p["action"], p["action"])),
            f"{p['cool_down_seconds']}s",
            when(p["last_triggered_at"]),
        )
    return table


@policies_app.command("create")
def create_policy(
    project: ProjectOpt,
    name: Name,
    on: Annotated[str, typer.Option("--on", help="drift, alert or anomaly")],
    action: Annotated[str, typer.Option("--do", help="evaluate, retrain or notify")],
    deployment: Annotated[str | None, typer.Option("--deployment", "-d")] = None,
    model: Annotated[str | None, typer.Option("--model", help="every deployment of this model")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="the suite id (evaluate)")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="the dataset id (retrain)")] = None,
    cool_down: Annotated[int, typer.Option("--cool-down", help="seconds")] = 3600,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a policy."""
    body = params(
        name=name,
        on=on,
        action=action,
        deployment_id=deployment,
        model_name=model,
        suite_id=suite,
        dataset_id=dataset,
        cool_down_seconds=cool_down,
    )
    with connect(url, token) as http:
        policy = check(http.post(api_path(project, "monitoring", "policies"), json=body)).json()
    out.print(policies_table([policy]))


@policies_app.command("list")
def list_policies(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's policies."""
    with connect(url, token) as http:
        policies = check(http.get(api_path(project, "monitoring", "policies"))).json()
    print_items(policies, as_json, policies_table, "no policies")


def actions_table(actions: list[dict[str, Any]]) -> Table:
    table = Table(title="policy actions")
    for head in ("at", "cause", "outcome", "event"):
        table.add_column(head)
    for a in actions:
        table.add_row(
            when(a["created_at"]), f"{a['cause_type']} {a['cause_event_id']}", a["outcome"], a["event_id"] or "-"
        )
    return table


@policies_app.command("actions")
def policy_actions(
    project: ProjectOpt,
    policy_id: Annotated[str, typer.Argument()],
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """What a policy did and why."""
    with connect(url, token) as http:
        actions = check(http.get(api_path(project, "monitoring", "policies", policy_id, "actions"))).json()
    print_items(actions, as_json, actions_table, "the policy has not acted yet")


@policies_app.command("delete")
def delete_policy(
    project: ProjectOpt, policy_id: Annotated[str, typer.Argument()], url: Url = None, token: Token = None
) -> None:
    """Delete a policy."""
    with connect(url, token) as http:
        check(http.delete(api_path(project, "monitoring", "policies", policy_id)))
    err.print(f"policy {policy_id} deleted")


def alerts(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """What is firing or pending now: alert rules and budget alerts."""
    with connect(url, token) as http:
        body = check(http.get(api_path(project, "monitoring", "alerts"))).json()
    if as_json:
        echo_json(body)
        return
    if not body["rules"] and not body["budgets"]:
        err.print("nothing firing")
        return
    if body["rules"]:
        out.print(rules_table(body["rules"]))
    for b in body["budgets"]:
        out.print(
            f"[red]budget {b['budget_id']}[/red] ({b['scope']} {escape(b['subject'])}, {b['period']}): "
            f"{b['state']} at the alert share of {number(b['max_tokens'])} tokens / {number(b['max_cost'])} cost"
        )
