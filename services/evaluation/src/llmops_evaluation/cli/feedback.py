"""`llmops eval feedback ...`: give a feedback, summarise feedback per model version, export corrections as a dataset
version, all through the evaluation service's HTTP API (``LLMOPS_CLIENT_EVALUATION_URL``, ``LLMOPS_CLIENT_TOKEN``)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import AsJson, api_path, print_items
from llmops.client import Token, echo_json, err, params
from llmops_evaluation.cli.common import ProjectOpt, Url, check, connect

feedback_app = typer.Typer(help="Human feedback: give, summary, export corrections.", no_args_is_help=True)

ModelVersion = Annotated[str | None, typer.Option("--model-version-id", help="the model version it is about")]
RunId = Annotated[str | None, typer.Option("--run-id", help="the evaluation run it is about")]


class Thumb(StrEnum):
    UP = "up"
    DOWN = "down"


def _interval(figures: dict[str, Any], digits: int = 2) -> str:
    if figures["mean"] is None:
        return ""
    return f"{figures['mean']:.{digits}f} [{figures['low']:.{digits}f}, {figures['high']:.{digits}f}]"


def summary_table(items: list[dict[str, Any]]) -> Table:
    """Per model version: how many, the mean rating and the share of thumbs up with their 95% intervals."""
    table = Table("model version", "feedback", "ratings", "mean rating (95%)", "up", "down", "share up (95%)", "fixes")
    for s in items:
        table.add_row(
            escape(s["model_version_id"] or "(none)"),
            str(s["count"]),
            str(s["rating"]["n"]),
            _interval(s["rating"]),
            str(s["thumbs_up"]),
            str(s["thumbs_down"]),
            _interval(s["share_up"]),
            str(s["corrections"]),
        )
    return table


@feedback_app.command("give")
def give(
    project: ProjectOpt,
    rating: Annotated[int | None, typer.Option("--rating", min=1, max=5, help="1 (bad) to 5 (good)")] = None,
    thumb: Annotated[Thumb | None, typer.Option("--thumb", help="up or down")] = None,
    correction: Annotated[str | None, typer.Option("--correction", help="what the output should have been")] = None,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    inference_id: Annotated[str | None, typer.Option("--inference-id", help="the served response")] = None,
    model_version_id: ModelVersion = None,
    run_id: RunId = None,
    example_index: Annotated[int | None, typer.Option("--example-index", min=0, help="the run's example")] = None,
    input_: Annotated[str | None, typer.Option("--input", help="the input the output answered")] = None,
    output: Annotated[str | None, typer.Option("--output", help="the output judged")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="the same key again counts once (safe retries)")
    ] = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Give one feedback (a rating, a thumb and/or a correction) about an inference, a model version or a run's
    example; prints its id."""
    body = params(
        rating=rating,
        thumb=thumb.value if thumb else None,
        correction=correction,
        comment=comment,
        inference_id=inference_id,
        model_version_id=model_version_id,
        run_id=run_id,
        example_index=example_index,
        input=input_,
        output=output,
        source="llmops-cli",
    )
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with connect(url, token) as client:
        response = check(client.post(api_path(project, "evaluation", "feedback"), json=body, headers=headers))
    given = response.json()
    if as_json:
        echo_json(given)
        return
    if response.status_code == 200:
        err.print("this feedback was given before: counted once")
    typer.echo(given["id"])


@feedback_app.command("summary")
def summary(
    project: ProjectOpt,
    model_version_id: ModelVersion = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Feedback per model version: counts, the mean rating and the share of thumbs up with 95% intervals."""
    with connect(url, token) as client:
        response = client.get(
            api_path(project, "evaluation", "feedback", "summary"), params=params(model_version_id=model_version_id)
        )
        items = check(response).json()
    print_items(items, as_json, summary_table, "no feedback yet")


@feedback_app.command("export")
def export(
    project: ProjectOpt,
    dataset: Annotated[str, typer.Option("--dataset", help="the dataset whose next version the corrections become")],
    model_version_id: ModelVersion = None,
    run_id: RunId = None,
    since: Annotated[
        datetime | None, typer.Option("--since", help="only feedback from this time on (UTC unless it says)")
    ] = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Export the corrections (with their inputs) as an instruction dataset's next version; prints the import id
    and the number of rows (the datasets service then imports it: `llmops datasets show NAME`)."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    body = params(
        dataset=dataset,
        model_version_id=model_version_id,
        run_id=run_id,
        since=since.isoformat() if since else None,
    )
    with connect(url, token) as client:
        result = check(client.post(api_path(project, "evaluation", "feedback", "export"), json=body))
    exported = result.json()
    if as_json:
        echo_json(exported)
        return
    if exported["skipped"]:
        err.print(f"{exported['skipped']} corrections without an input were left out")
    typer.echo(f"{exported['import_id']}\t{exported['rows']} rows")
