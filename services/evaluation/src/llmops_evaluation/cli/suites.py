"""`llmops eval suites ...`: create a suite (or its next version) from a JSON file, list and show them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import AsJson, api_path, print_items, when
from llmops.client import Token, echo_json, fail, out
from llmops_evaluation.cli.common import ProjectOpt, Url, check, connect

suites_app = typer.Typer(help="Suites: create (a new version), list, show.", no_args_is_help=True)


def suites_table(suites: list[dict[str, Any]]) -> Table:
    table = Table(title="suites")
    for column in ("name", "version", "dataset", "scorers", "gates", "models", "created"):
        table.add_column(column)
    for suite in suites:
        spec = suite["spec"]
        dataset = f"{spec['dataset']['name']} v{spec['dataset']['version']} ({spec['dataset']['split']})"
        table.add_row(
            escape(suite["name"]),
            str(suite["version"]),
            escape(dataset),
            escape(", ".join(s["type"] for s in spec["scorers"])),
            escape("; ".join(gate_text(g) for g in spec["gates"])),
            escape(", ".join(suite["models"])),
            when(suite["created_at"]),
        )
    return table


def gate_text(gate: dict[str, Any]) -> str:
    if gate.get("baseline") is None:
        return f"{gate['metric']} {gate['op']} {gate['threshold']}"
    margin = gate.get("margin") or 0
    sign = "+" if margin >= 0 else "-"
    return f"{gate['metric']} {gate['op']} {gate['baseline']}" + (f" {sign} {abs(margin)}" if margin else "")


@suites_app.command("create")
def create(
    project: ProjectOpt,
    file: Annotated[Path, typer.Argument(help="the suite as JSON (name, dataset, scorers, gates, models...)")],
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Store a suite; a suite of an existing name becomes its next version (versions are immutable)."""
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"cannot read the suite from {file}: {exc}", code=2)
    with connect(url, token) as client:
        suite = check(client.post(api_path(project, "evaluation", "suites"), json=body)).json()
    if as_json:
        echo_json(suite)
    else:
        out.print(suites_table([suite]))


@suites_app.command("list")
def list_suites(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's suites at their latest versions."""
    with connect(url, token) as client:
        suites = check(client.get(api_path(project, "evaluation", "suites"))).json()
    print_items(suites, as_json, suites_table, "no suites yet")


@suites_app.command("show")
def show(
    project: ProjectOpt,
    name: Annotated[str, typer.Argument(help="the suite's name")],
    version: Annotated[int | None, typer.Option("--version", help="a version (default: the latest)", min=1)] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """A suite version in full, as JSON."""
    parts = ("evaluation", "suites", name) if version is None else ("evaluation", "suites", name, "versions", version)
    with connect(url, token) as client:
        echo_json(check(client.get(api_path(project, *parts))).json())
