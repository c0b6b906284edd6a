"""``llmops monitor metrics`` and ``llmops monitor anomalies``: the numbers of a time range, per group."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import AsJson, api_path, print_items, when
from llmops.client import Token, params
from llmops_monitoring.cli.common import DeploymentOpt, ProjectOpt, Since, Until, Url, check, connect, moment, number

monitor_app = typer.Typer(
    help="What the served models do: metrics, unusual outputs, drift reports, alerts, rules and policies.",
    no_args_is_help=True,
)

GROUPS = ("route", "deployment_id", "model_version_id", "user")


def metrics_table(groups: list[dict[str, Any]], by: list[str], step: bool) -> Table:
    table = Table(title="inference metrics")
    heads = (["start"] if step else []) + by
    heads += ["requests", "errors", "p50 ms", "p95 ms", "p99 ms", "ttft p95", "tok in", "tok out", "tok/s", "cost"]
    heads += ["feedback", "flags"]
    for head in heads:
        table.add_column(head, justify="right" if head not in by and head not in ("start", "flags") else "left")
    for g in groups:
        flags = ", ".join(f"{k} {v}" for k, v in g["flags"].items())
        row = ([when(g["start"])] if step else []) + [escape(str(g.get(name) or "-")) for name in by]
        row += [
            str(g["requests"]),
            f"{g['errors']} ({number(g['error_rate'], 2)})" if g["errors"] else "0",
            number(g["latency_ms"]["p50"]),
            number(g["latency_ms"]["p95"]),
            number(g["latency_ms"]["p99"]),
            number(g["ttft_ms"]["p95"]),
            str(g["tokens_in"]),
            str(g["tokens_out"]),
            number(g["tokens_per_second"], 3),
            number(g["cost"]),
            number(g["feedback_mean"], 2),
            escape(flags),
        ]
        table.add_row(*row)
    return table


@monitor_app.command("metrics")
def metrics(
    project: ProjectOpt,
    by: Annotated[list[str], typer.Option("--by", help=f"group by: {', '.join(GROUPS)} (repeat)")] = [],  # noqa: B006
    since: Since = "1h",
    until: Until = None,
    step: Annotated[bool, typer.Option("--step", help="one row per minute or hour bucket")] = False,
    deployment: DeploymentOpt = None,
    route: Annotated[str | None, typer.Option("--route")] = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Requests, errors, latency and TTFT percentiles, tokens, tokens/s, cost, feedback and flags of a range."""
    query = {"start": moment(since), "end": moment(until), "group_by": by, "step": step}
    query |= {"deployment_id": deployment, "route": route}
    with connect(url, token) as http:
        body = check(http.get(api_path(project, "monitoring", "metrics"), params=params(**query))).json()
    print_items(body["groups"], as_json, lambda g: metrics_table(g, by, step), "no requests in that range")


def anomalies_table(windows: list[dict[str, Any]]) -> Table:
    table = Table(title="unusual outputs per window")
    for head in ("window", "deployment", "records", "flags (count: examples)", "assessed"):
        table.add_column(head)
    for w in windows:
        flags = "; ".join(
            f"{kind} {f['count']}: {', '.join(f['examples'][:2])}" for kind, f in sorted(w["flags"].items())
        )
        table.add_row(
            when(w["window_start"]),
            escape(w["deployment_id"]),
            str(w["records"]),
            escape(flags or "-"),
            "yes" if w.get("assessed") else "no",
        )
    return table


@monitor_app.command("anomalies")
def anomalies(
    project: ProjectOpt,
    since: Since = "6h",
    until: Until = None,
    deployment: DeploymentOpt = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Flagged records per window and deployment (empty, truncated, repetition, PII, refusal, outliers)."""
    query = {"start": moment(since), "end": moment(until), "deployment_id": deployment}
    with connect(url, token) as http:
        body = check(http.get(api_path(project, "monitoring", "anomalies"), params=params(**query))).json()
    print_items(body["windows"], as_json, anomalies_table, "no records in that range")
