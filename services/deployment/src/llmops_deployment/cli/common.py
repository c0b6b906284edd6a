"""What the deployment commands share: their options, the client of the deployment service
(``LLMOPS_CLIENT_DEPLOYMENT_URL``), and the tables."""

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

Url = url_option("deployment")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why (kept in the history and the event)")]
DeploymentId = Annotated[str, typer.Argument(help="the deployment's id (as `llmops deploy list` prints it)")]


def connect(
    url: str | None, token: str | None, *, timeout: httpx.Timeout = TIMEOUT
) -> AbstractContextManager[httpx.Client]:
    """An HTTP client for the deployment service; a missing token or an unreachable service ends the command."""
    hint = "llmops token issue --role ml-engineer --project P"
    return llmops_client.connect("deployment", url, token, timeout=timeout, issue_hint=hint)


check = llmops_client.check

_COLOURS = {"ready": "green", "failed": "red", "stopped": "dim", "stopping": "yellow", "requested": "cyan"}


def status_label(status: str) -> str:
    colour = _COLOURS.get(status)
    return f"[{colour}]{escape(status)}[/{colour}]" if colour else escape(status)


def served_label(deployment: dict[str, Any]) -> str:
    """What a deployment serves: ``name vN`` of a registered model, or an external server's model and URL."""
    if deployment.get("external"):
        return f"{deployment['external']['model']} at {deployment['external']['url']}"
    return f"{deployment.get('model_name')} v{deployment.get('model_version')}"


def gates_label(deployment: dict[str, Any]) -> str:
    checks = deployment.get("gates") or []
    if deployment.get("gate_override"):
        return f"overridden: {deployment.get('override_reason')}"
    if not checks:
        return "none attached"
    verdicts = {True: "passed", False: "failed", None: "no decision"}
    return ", ".join(f"{c['suite']} {verdicts[c.get('passed')]}" for c in checks)


def deployments_table(deployments: list[dict[str, Any]]) -> Table:
    table = Table(title="deployments")
    for column in ("id", "name", "serves", "backend", "pool", "replicas", "status", "created"):
        table.add_column(column)
    for d in deployments:
        table.add_row(
            d["id"],
            escape(d["name"]),
            escape(served_label(d)),
            d["backend"],
            escape(d["pool"]),
            str(d["replicas"]),
            status_label(d["status"]),
            when(d["created_at"]),
        )
    return table


def deployment_table(deployment: dict[str, Any]) -> Table:
    """A deployment with its gates and its replicas: status, endpoint, worker, restarts, last error."""
    title = (
        f"{escape(deployment['name'])} ({deployment['id']}) · {escape(served_label(deployment))} · "
        f"{deployment['backend']} on {escape(deployment['pool'])} · {status_label(deployment['status'])}\n"
        f"gates: {escape(gates_label(deployment))}"
    )
    table = Table(title=title)
    for column in ("replica", "status", "endpoint", "worker", "restarts", "last error"):
        table.add_column(column)
    for r in deployment.get("replica_states") or []:
        table.add_row(
            str(r["replica"]),
            status_label(r["status"]),
            escape(r.get("endpoint") or "-"),
            escape(r.get("worker") or "-"),
            str(r.get("restarts", 0)),
            escape(r.get("last_error") or ""),
        )
    return table
