"""`llmops train ...`: start a training job, follow its progress, read its logs, cancel it, list the jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from llmops.cli_kit import AsJson, api_path, key_values, print_items
from llmops.client import Token, echo_json, err, fail, out, params
from llmops_training.cli.common import (
    TERMINAL,
    Follow,
    Interval,
    JobId,
    Method,
    ProjectOpt,
    Split,
    Status,
    Url,
    check,
    connect,
)
from llmops_training.cli.tables import job_table, jobs_table, log_line, number

train_app = typer.Typer(help="Training jobs: start, status (--follow), logs, cancel, list.", no_args_is_help=True)

LOG_PAGE = 500  # log lines per request


# -- pure helpers ------------------------------------------------------------------------------------------------
def parse_ref(value: str, option: str) -> dict[str, Any]:
    """``NAME:VERSION`` as ``{"name": ..., "version": ...}``; anything else is a usage error of ``option``."""
    name, sep, version = value.rpartition(":")
    if not sep or not name or not version.isdigit() or int(version) < 1:
        raise typer.BadParameter(f"{value!r} is not NAME:VERSION (e.g. support-chats:3)", param_hint=f"'{option}'")
    return {"name": name, "version": int(version)}


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, lists, true) is taken as such, else as text."""
    try:
        return key_values(pairs)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc.args[0]!r} is not key=value", param_hint="'--set'") from None


def read_hyperparameters(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"cannot read hyperparameters from {path}: {exc}", code=2)
    if not isinstance(document, dict):
        fail(f"{path} must hold a JSON object of hyperparameters", code=2)
    return document


def job_body(
    *,
    base_model: str,
    dataset: str,
    split: Split,
    prompt: str | None,
    method: Method,
    pool: str,
    model_name: str | None,
    hyperparameters: dict[str, Any],
) -> dict[str, Any]:
    """The job request: the hyperparameters given (the service's defaults apply to the rest)."""
    body: dict[str, Any] = {
        "base_model": base_model,
        "dataset": parse_ref(dataset, "--dataset") | {"split": split.value},
        "method": method.value,
        "pool": pool,
        "hyperparameters": hyperparameters,
    }
    if prompt is not None:
        body["prompt"] = parse_ref(prompt, "--prompt")
    if model_name is not None:
        body["model_name"] = model_name
    return body


def _job_path(project: str, job_id: str, *parts: str) -> str:
    return api_path(project, "training", "jobs", job_id, *parts)


def registered_version(client: httpx.Client, project: str, job: dict[str, Any]) -> dict[str, Any] | None:
    """The model version a completed job registered (None if it cannot be found)."""
    if not job.get("model_version_id"):
        return None
    response = client.get(api_path(project, "models", job["model_name"]))
    if not response.is_success:
        return None
    return next((v for v in response.json()["versions"] if v["id"] == job["model_version_id"]), None)


def job_progress(console: Console) -> Progress:
    """A job's progress display: status, bar and steps done of max_steps, loss, tokens/s, time elapsed."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps  loss {task.fields[loss]}  {task.fields[speed]} tokens/s"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console)


def show_job(progress: Progress, task: TaskID, job: dict[str, Any]) -> None:
    """Update a :func:`job_progress` task from a job as the API returns it."""
    figures = job.get("progress") or {}
    progress.update(
        task,
        description=job["status"],
        total=job.get("max_steps"),
        completed=job.get("step") or 0,
        loss=number(figures.get("loss")) or "-",
        speed=number(figures.get("tokens_per_second")) or "-",
    )


def follow_job(client: httpx.Client, project: str, job_id: str, interval: float) -> dict[str, Any]:
    """Poll a job until it ends, showing its progress on stderr; the ended job."""
    with job_progress(err) as progress:
        task = progress.add_task("queued", total=None, loss="-", speed="-")
        while True:
            job = check(client.get(_job_path(project, job_id))).json()
            show_job(progress, task, job)
            if job["status"] in TERMINAL:
                return job
            time.sleep(interval)


def report_end(client: httpx.Client, project: str, job: dict[str, Any], as_json: bool) -> None:
    """Print how a followed job ended; exit 1 when it failed or was cancelled."""
    version = registered_version(client, project, job) if job["status"] == "completed" else None
    if as_json:
        echo_json(job | ({"model_version": version["version"]} if version else {}))
    else:
        out.print(job_table(job))
    if job["status"] == "completed":
        if version is not None:
            err.print(
                f"[green]completed[/green]: model {escape(job['model_name'])} v{version['version']} registered "
                f"(`llmops models lineage {escape(job['model_name'])} {version['version']} -p {escape(project)}`)"
            )
        return
    if job["status"] == "failed":
        fail(f"job {job['id']} failed: {job.get('error') or 'no reason given'}")
    fail(f"job {job['id']} was cancelled by {job.get('cancel_requested_by') or 'someone'} at step {job.get('step')}")


@train_app.command("start")
def train_start(
    project: ProjectOpt,
    base_model: Annotated[str, typer.Option("--base-model", help="a base model of the project")],
    dataset: Annotated[str, typer.Option("--dataset", help="the dataset version to train on, NAME:VERSION")],
    split: Annotated[Split, typer.Option("--split", help="the split to train on")] = Split.TRAIN,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="render each row through this prompt version, NAME:VERSION")
    ] = None,
    method: Annotated[Method, typer.Option("--method", help="lora, full or qlora (qlora needs a CUDA pool)")] = (
        Method.LORA
    ),
    pool: Annotated[str, typer.Option("--pool", help="the worker pool that runs the job")] = "cpu",
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="the model it registers (default BASE-METHOD)")
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="a hyperparameter, key=value (JSON values parsed); repeatable; wins over the file"),
    ] = None,
    hyperparameters_file: Annotated[
        Path | None, typer.Option("--hyperparameters", help="a JSON file of hyperparameters", dir_okay=False)
    ] = None,
    follow: Follow = False,
    interval: Interval = 1.0,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Start a fine-tuning job; prints its id (with --follow, follows it like `llmops train status --follow`).

    Hyperparameters: epochs, max_steps, learning_rate, batch_size, gradient_accumulation, lora_rank, lora_alpha,
    lora_dropout, target_modules, max_seq_length, seed, checkpoint_every, bf16, merge.
    """
    hyperparameters = read_hyperparameters(hyperparameters_file) | parse_settings(settings or [])
    body = job_body(
        base_model=base_model,
        dataset=dataset,
        split=split,
        prompt=prompt,
        method=method,
        pool=pool,
        model_name=model_name,
        hyperparameters=hyperparameters,
    )
    with connect(url, token) as client:
        job = check(client.post(api_path(project, "training", "jobs"), json=body)).json()
        if not follow:
            if as_json:
                echo_json(job)
            else:
                err.print(f"queued job for model {escape(job['model_name'])} on pool {escape(job['pool'])}")
                typer.echo(job["id"])
            return
        err.print(f"job {job['id']} queued; following it (Ctrl-C stops following, not the job)")
        report_end(client, project, follow_job(client, project, job["id"], interval), as_json)


@train_app.command("status")
def train_status(
    job_id: JobId,
    project: ProjectOpt,
    follow: Follow = False,
    interval: Interval = 1.0,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """A job's status, step, loss, metrics and error.

    With --follow, a progress bar (step of max_steps, loss, tokens/s) until the job ends; exit 1 when it failed or was
    cancelled.
    """
    with connect(url, token) as client:
        if follow:
            report_end(client, project, follow_job(client, project, job_id, interval), as_json)
            return
        job = check(client.get(_job_path(project, job_id))).json()
        version = registered_version(client, project, job)
    if as_json:
        echo_json(job)
        return
    out.print(job_table(job))
    if version is not None:
        out.print(f"registered model {escape(job['model_name'])} v{version['version']}")


@train_app.command("logs")
def train_logs(
    job_id: JobId,
    project: ProjectOpt,
    follow: Follow = False,
    interval: Interval = 1.0,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """A job's log lines (queued, started, checkpoints, how it ended); --follow prints new ones until it ends."""
    after, ended = 0, False
    with connect(url, token) as client:
        while True:
            query = {"after": after, "limit": LOG_PAGE}
            lines = check(client.get(_job_path(project, job_id, "logs"), params=query)).json()
            for line in lines:
                echo_json(line) if as_json else out.print(log_line(line), highlight=False)
                after = line["id"]
            if len(lines) == LOG_PAGE:
                continue
            if not follow or ended:
                return
            # Read once more after the job has ended: the lines written just before its end.
            ended = check(client.get(_job_path(project, job_id))).json()["status"] in TERMINAL
            if not ended:
                time.sleep(interval)


@train_app.command("cancel")
def train_cancel(
    job_id: JobId, project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None
) -> None:
    """Cancel a job: a queued one at once, a running one at its worker's next step."""
    with connect(url, token) as client:
        job = check(client.post(_job_path(project, job_id, "cancel"))).json()
    if as_json:
        echo_json(job)
    elif job["status"] == "cancelled":
        out.print(f"cancelled job {job['id']}")
    else:
        out.print(f"cancellation requested: job {job['id']} stops at its next step (`llmops train status --follow`)")


@train_app.command("list")
def train_list(
    project: ProjectOpt,
    status: Annotated[Status | None, typer.Option("--status", help="only jobs in this state")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (1..500)")] = 50,
    offset: Annotated[int, typer.Option(help="skip this many")] = 0,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """The project's training jobs, newest first."""
    query = params(status=status.value if status else None, limit=limit, offset=offset)
    with connect(url, token) as client:
        items = check(client.get(api_path(project, "training", "jobs"), params=query)).json()
    print_items(items, as_json, jobs_table, "no training jobs")
    if items and not as_json and len(items) == limit:
        err.print(f"[yellow]more may match:[/yellow] pass --offset {offset + limit}")
