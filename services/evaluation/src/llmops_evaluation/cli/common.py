"""What the evaluation commands share: their options, the client of the evaluation service, and the tables."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from llmops import client as llmops_client
from llmops.cli_kit import when
from llmops.client import TIMEOUT, url_option

TERMINAL = ("completed", "failed")

Url = url_option("evaluation")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project")]
RunId = Annotated[str, typer.Argument(help="the run's id (as `llmops eval run` or `llmops eval runs` print it)")]


def connect(
    url: str | None, token: str | None, *, timeout: httpx.Timeout = TIMEOUT
) -> AbstractContextManager[httpx.Client]:
    """An HTTP client for the evaluation service; a missing token or an unreachable service ends the command."""
    hint = "llmops token issue --role ml-engineer --project P"
    return llmops_client.connect("evaluation", url, token, timeout=timeout, issue_hint=hint)


check = llmops_client.check


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def target_label(target: dict[str, Any]) -> str:
    if target.get("kind") == "model_version":
        return f"{target.get('model_name')} v{target.get('model_version')}"
    if target.get("kind") == "base_model":
        return f"base model {(target.get('base_model') or {}).get('name')}"
    return f"endpoint {target.get('endpoint')}"


def metrics_table(run: dict[str, Any]) -> Table:
    """A run's metrics: value, mean with its bootstrap 95% interval, examples, errors and unparseable answers."""
    table = Table(title=f"run {run['id']} · {escape(target_label(run['target']))} · {run['status']}")
    for column in ("metric", "value", "mean", "95% interval", "n", "errors", "unparseable"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, m in sorted((run.get("metrics") or {}).items()):
        interval = "-" if m.get("low") is None else f"[{number(m['low'])}, {number(m['high'])}]"
        table.add_row(
            escape(name),
            number(m.get("value")),
            number(m.get("mean")),
            interval,
            str(m.get("n", "-")),
            str(m.get("errors", 0)),
            str(m.get("unparseable", 0)),
        )
    return table


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="runs")
    for column in ("id", "target", "status", "trigger", "examples", "created"):
        table.add_column(column)
    for run in runs:
        done = f"{run.get('examples_done') or 0}/{run.get('examples_total') or '?'}"
        table.add_row(
            run["id"], escape(target_label(run["target"])), run["status"], run["trigger"], done, when(run["created_at"])
        )
    return table


def comparison_table(comparison: dict[str, Any]) -> Table:
    """Per metric: both means, the difference with its paired 95% interval, the p-value, wins/ties/losses."""
    table = Table(title=f"{escape(comparison['suite'])} v{comparison['suite_version']}: candidate vs baseline")
    for column in ("metric", "baseline", "candidate", "difference", "95% interval", "p", "wins/ties/losses"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, c in sorted(comparison["metrics"].items()):
        interval = "-" if c.get("low") is None else f"[{number(c['low'])}, {number(c['high'])}]"
        table.add_row(
            escape(name),
            number(c.get("mean_baseline")),
            number(c.get("mean_candidate")),
            number(c.get("mean_difference")),
            interval,
            number(c.get("p_value"), 2),
            f"{c['wins']}/{c['ties']}/{c['losses']}",
        )
    return table


def decision_table(decision: dict[str, Any]) -> Table:
    """A gate decision rule by rule, and its override if an admin recorded one."""
    verdict = "[green]PASS[/green]" if decision["passed"] else "[red]FAIL[/red]"
    model = f"{decision.get('model_name')} v{decision.get('model_version')}" if decision.get("model_name") else "-"
    title = f"gate of {escape(decision['suite'])} v{decision['suite_version']} on {escape(model)}: {verdict}"
    if decision.get("override_id"):
        outcome = "pass" if decision["override_passed"] else "fail"
        title += (
            f" (overridden to {outcome} by {escape(decision['override_actor'])}: {escape(decision['override_reason'])})"
        )
    table = Table(title=title)
    for column in ("rule", "result", "value", "bound", "reason"):
        table.add_column(column)
    for rule in decision["rules"]:
        table.add_row(
            escape(rule["rule"]),
            "[green]pass[/green]" if rule["passed"] else "[red]fail[/red]",
            number(rule.get("value")),
            number(rule.get("bound")),
            escape(rule["reason"]),
        )
    return table
