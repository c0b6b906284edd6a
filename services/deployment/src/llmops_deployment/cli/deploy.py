"""``llmops deploy create|list|show|stop|logs``: deploy a gated model version (or an external server), wait until it
serves, read its replicas and logs, stop it."""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from llmops.cli_kit import AsJson, api_path, print_items
from llmops.client import Token, echo_json, err, fail, out, params
from llmops_deployment.cli.common import (
    DeploymentId,
    ProjectOpt,
    Url,
    check,
    connect,
    deployment_table,
    deployments_table,
)

deploy_app = typer.Typer(
    help="Deployments of gated model versions: create (--wait), list, show, stop, logs.", no_args_is_help=True
)

#: A deployment in one of these states is done waiting.
SETTLED = ("ready", "failed", "stopped")
LOG_PAGE = 500  # log lines per request
#: What to say when the service answers that a version's gates have not passed.
HINTS = {
    "urn:llmops:problem:gate-not-passed": "run the suites (`llmops eval run`), or, as an admin, --override-reason",
}


def create_body(
    name: str,
    *,
    model: str | None,
    version: int | None,
    alias: str | None,
    external_url: str | None,
    external_model: str | None,
    secret_ref: str | None,
    backend: str | None,
    pool: str,
    replicas: int,
    generation: dict[str, Any],
    override_reason: str | None,
) -> dict[str, Any]:
    """The request of ``llmops deploy create``: a registered model by version or alias, or an external server."""
    body: dict[str, Any] = {"name": name, "pool": pool, "replicas": replicas}
    if external_url is not None:
        if model is not None or version is not None or alias is not None:
            raise typer.BadParameter("--external-url serves no registered model: leave out --model/--version/--alias")
        if not external_model:
            raise typer.BadParameter("--external-url needs --external-model (the model name the server is asked for)")
        body["backend"] = backend or "external"
        body["external"] = {"url": external_url, "model": external_model} | (
            {"secret_ref": secret_ref} if secret_ref else {}
        )
    else:
        if model is None:
            raise typer.BadParameter("name --model NAME (with --version N or --alias A), or --external-url")
        if (version is None) == (alias is None):
            raise typer.BadParameter("name the model's --version or its --alias (one of them)")
        body["backend"] = backend or "transformers"
        body["model"] = {"name": model} | ({"version": version} if version is not None else {"alias": alias})
    if generation:
        body["generation"] = generation
    if override_reason is not None:
        body["override_reason"] = override_reason
    return body


def wait_until_settled(client: httpx.Client, project: str, deployment_id: str, interval: float, timeout: float):
    """Poll a deployment, with a spinner, until it is ready, failed or stopped (or ``timeout`` seconds pass)."""
    deadline = time.monotonic() + timeout
    with err.status("requested: waiting for a serving worker") as spinner:
        while True:
            found = check(client.get(api_path(project, "deployments", deployment_id))).json()
            ready = sum(r["status"] == "ready" for r in found.get("replica_states") or [])
            spinner.update(f"{found['status']}: {ready}/{found['replicas']} replicas ready")
            if found["status"] in SETTLED:
                return found
            if time.monotonic() > deadline:
                fail(f"deployment {deployment_id} is still {found['status']} after {timeout:g}s")
            time.sleep(interval)


@deploy_app.command("create")
def create(
    project: ProjectOpt,
    name: Annotated[str, typer.Argument(help="the deployment's name")],
    model: Annotated[str | None, typer.Option("--model", help="the registered model's name")] = None,
    version: Annotated[int | None, typer.Option("--version", min=1, help="the model's version")] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="instead of --version: an alias of the model")] = None,
    external_url: Annotated[
        str | None, typer.Option("--external-url", help="an OpenAI-compatible server that already runs")
    ] = None,
    external_model: Annotated[
        str | None, typer.Option("--external-model", help="the model name the external server is asked for")
    ] = None,
    secret_ref: Annotated[
        str | None, typer.Option("--secret-ref", help="the environment variable holding the external server's key")
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="transformers, vllm, tgi or external (default: by the target)")
    ] = None,
    pool: Annotated[str, typer.Option("--pool", help="the pool of serving workers")] = "cpu",
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="replicas to run")] = 1,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="default max_tokens")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0, help="default temperature")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="default top_p")] = None,
    override_reason: Annotated[
        str | None, typer.Option("--override-reason", help="admins: deploy past missing or failed gates (audited)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until it is ready (or failed)")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="seconds between polls")] = 1.0,
    wait_timeout: Annotated[float, typer.Option("--timeout", min=1, help="seconds --wait waits at most")] = 900.0,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Deploy a model version (its evaluation gates must have passed) or an external server."""
    body = create_body(
        name,
        model=model,
        version=version,
        alias=alias,
        external_url=external_url,
        external_model=external_model,
        secret_ref=secret_ref,
        backend=backend,
        pool=pool,
        replicas=replicas,
        generation=params(max_tokens=max_tokens, temperature=temperature, top_p=top_p),
        override_reason=override_reason,
    )
    with connect(url, token) as client:
        created = check(client.post(api_path(project, "deployments"), json=body), hints=HINTS).json()
        if created["gate_override"]:
            err.print(f"[yellow]gates overridden[/yellow]: {escape(created['override_reason'] or '')}")
        if not wait:
            echo_json(created) if as_json else err.print(f"deployment {created['id']} requested on pool {pool!r}")
            return
        settled = wait_until_settled(client, project, created["id"], interval, wait_timeout)
    echo_json(settled) if as_json else out.print(deployment_table(settled))
    if settled["status"] != "ready":
        fail(f"deployment {settled['id']} {settled['status']}: {settled.get('last_error') or 'no reason given'}")


@deploy_app.command("list")
def list_(
    project: ProjectOpt,
    status: Annotated[str | None, typer.Option("--status", help="only deployments in this state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="at most this many")] = 50,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """The project's deployments, newest first."""
    with connect(url, token) as client:
        found = check(client.get(api_path(project, "deployments"), params=params(status=status, limit=limit)))
    print_items(found.json(), as_json, deployments_table, "no deployments yet")


@deploy_app.command("show")
def show(
    project: ProjectOpt, deployment_id: DeploymentId, as_json: AsJson = False, url: Url = None, token: Token = None
) -> None:
    """A deployment with its gates and its replicas (status, endpoint, worker, restarts, last error)."""
    with connect(url, token) as client:
        found = check(client.get(api_path(project, "deployments", deployment_id))).json()
    echo_json(found) if as_json else out.print(deployment_table(found))


@deploy_app.command("stop")
def stop(
    project: ProjectOpt,
    deployment_id: DeploymentId,
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")] = "",
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Stop a deployment: its workers drain in-flight requests, then stop its backends."""
    with connect(url, token) as client:
        found = check(client.post(api_path(project, "deployments", deployment_id, "stop"), json={"reason": reason}))
    echo_json(found.json()) if as_json else err.print(f"deployment {deployment_id} stopping")


@deploy_app.command("logs")
def logs(
    project: ProjectOpt,
    deployment_id: DeploymentId,
    after: Annotated[int, typer.Option("--after", min=0, help="only lines after this id")] = 0,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """A deployment's backend log lines (each replica's newest lines)."""
    with connect(url, token) as client:
        while True:
            query = {"after": after, "limit": LOG_PAGE}
            lines = check(client.get(api_path(project, "deployments", deployment_id, "logs"), params=query)).json()
            for line in lines:
                if as_json:
                    echo_json(line)
                else:
                    out.print(f"[dim]{line['at'][:19]} r{line['replica']}[/dim] {escape(line['line'])}")
                after = line["id"]
            if len(lines) < LOG_PAGE:
                return
