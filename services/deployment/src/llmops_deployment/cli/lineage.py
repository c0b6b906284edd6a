"""``llmops lineage REQUEST_ID``: where an answer came from, from the request to the deployment that served it (and
the gates that allowed it), the model version, its training job, dataset version, base model and prompt."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from llmops.cli_kit import AsJson, api_path, when
from llmops.client import Token, echo_json, out
from llmops_deployment.cli.common import ProjectOpt, Url, check, connect, gates_label

lineage_app = typer.Typer(
    help="Where an answer came from: deployment, gates, model version, training data.",
    # REQUEST_ID then options, as people write it (a group stops parsing options at its first argument otherwise).
    context_settings={"allow_interspersed_args": True},
)


def _short(sha: str | None) -> str:
    return "-" if not sha else sha[:12]


def lineage_tree(found: dict[str, Any]) -> Tree:
    """The chain, one level per link: request, deployment (with its gates), model version, and what it came from."""
    tree = Tree(
        f"request [bold]{escape(found['request_id'])}[/bold] · {found['status']} · route {escape(found['route'])}"
        f" · {when(found['at'])}"
    )
    tree.add(f"prompt version: {escape(found.get('prompt_version_id') or '-')}")
    tree.add(f"model hash: {_short(found.get('model_hash'))}")
    deployment = found.get("deployment")
    if deployment is None:
        tree.add(f"deployment: {escape(found.get('deployment_id') or '-')} (not one of this service's)")
    else:
        node = tree.add(
            f"deployment [bold]{escape(deployment['name'])}[/bold] ({deployment['id']}) · {deployment['backend']} on "
            f"{escape(deployment['pool'])} · by {escape(deployment['requested_by'])}"
        )
        node.add(f"gates: {escape(gates_label(deployment))}")
        for check_ in deployment.get("gates") or []:
            verdict = {True: "passed", False: "failed", None: "no decision"}[check_.get("passed")]
            extra = f", overridden in evaluation ({check_['overridden_by']})" if check_.get("overridden_by") else ""
            node.add(f"{escape(check_['suite'])} v{check_.get('suite_version')}: {verdict}{escape(extra)}")
    model = found.get("model_version")
    if model is None:
        tree.add(f"model version: {escape(found.get('model_version_id') or '-')} (not registered here)")
        return tree
    node = tree.add(
        f"model [bold]{escape(model['name'])} v{model['version']}[/bold] ({model['kind']}, "
        f"manifest {_short(model['manifest_sha256'])})"
    )
    node.add(f"training job: {model['training_job_id']} ({escape(model.get('method') or '-')})")
    dataset = model.get("dataset") or {}
    node.add(
        f"dataset: {escape(str(dataset.get('name', '-')))} v{dataset.get('version', '-')} "
        f"({dataset.get('version_id', '-')}, sha256 {_short(dataset.get('sha256'))})"
    )
    base = model.get("base_model") or {}
    revision = base.get("resolved_revision") or base.get("revision")
    node.add(
        f"base model: {escape(str(base.get('name', '-')))} (hash {_short(base.get('manifest_sha256'))}"
        + (f", revision {escape(str(revision))[:12]}" if revision else "")
        + ")"
    )
    prompt = model.get("prompt")
    if prompt:
        node.add(
            f"training prompt: {escape(str(prompt.get('name')))} v{prompt.get('version')} ({prompt.get('version_id')})"
        )
    return tree


@lineage_app.callback(invoke_without_command=True)
def lineage(
    request_id: Annotated[str, typer.Argument(help="the request's id (the gateway's X-Request-ID)")],
    project: ProjectOpt,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Where an answer came from: its deployment and the gates that allowed it, the model version, the training job,
    the dataset version, the base model and the prompt versions."""
    with connect(url, token) as client:
        found = check(client.get(api_path(project, "inferences", request_id, "lineage"))).json()
    echo_json(found) if as_json else out.print(lineage_tree(found))
