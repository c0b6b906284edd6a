"""`llmops models ...` and `llmops train ...`: base models, the model registry and training jobs, all through the
training service's HTTP API (``LLMOPS_CLIENT_TRAINING_URL``, ``LLMOPS_CLIENT_TOKEN``).

Nothing here imports torch or transformers at start (``llmops`` must stay fast): only ``models base tiny`` does,
when it runs.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.filesize import decimal
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
from rich.table import Table

from llmops import client as llmops_client
from llmops.client import TIMEOUT, Token, echo_json, err, fail, out, params, progress_bar, url_option

models_app = typer.Typer(
    help="Models: base models and the model registry (versions, lineage, aliases).", no_args_is_help=True
)
base_app = typer.Typer(
    help="Base models: register a model directory or a hub id, build the tiny one, list.", no_args_is_help=True
)
models_app.add_typer(base_app, name="base")
train_app = typer.Typer(help="Training jobs: start, status (--follow), logs, cancel, list.", no_args_is_help=True)

# The service answers an upload once it has unpacked it and stored every file: no read limit (Ctrl-C cancels).
UPLOAD_TIMEOUT = httpx.Timeout(30.0, read=None)
CHUNK = 1 << 20  # bytes read from the tar per chunk sent
TAR = "application/x-tar"
#: What a Hugging Face model directory must hold (the service refuses it otherwise; checked before packing).
REQUIRED_FILES = ("config.json",)
#: Folders of a model directory that are not the model (git metadata, huggingface_hub's download cache).
SKIPPED_DIRS = frozenset({".git", ".cache"})
TERMINAL = ("completed", "failed", "cancelled")
LOG_PAGE = 500  # log lines per request
#: Metrics shown with a job or a model version (the loss history and the spec are long; --json has them).
SHOWN_METRICS = (
    "final_loss",
    "train_loss",
    "steps",
    "epochs",
    "tokens",
    "tokens_per_second",
    "runtime_seconds",
    "wall_seconds",
    "trainable_parameters",
    "total_parameters",
)

Url = url_option("training")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
ModelName = Annotated[str, typer.Argument(help="the registered model's name")]
JobId = Annotated[str, typer.Argument(help="the job's id (as `llmops train start` or `llmops train list` print it)")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="follow until the job ends")]
Interval = Annotated[float, typer.Option("--interval", help="seconds between polls when following", min=0.1)]


class Method(StrEnum):
    LORA = "lora"
    FULL = "full"
    QLORA = "qlora"


class Split(StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# -- HTTP (the plumbing is llmops.client's) ----------------------------------------------------------------------
def connect(
    url: str | None, token: str | None, *, timeout: httpx.Timeout = TIMEOUT
) -> AbstractContextManager[httpx.Client]:
    """An HTTP client for the training service; a missing token or an unreachable service ends the command."""
    hint = "llmops token issue --role ml-engineer --project P"
    return llmops_client.connect("training", url, token, timeout=timeout, issue_hint=hint)


check = llmops_client.check


def api_path(project: str, *parts: str | int) -> str:
    """``/projects/{project}/part/...``, each part quoted."""
    return "/".join(["/projects", *(quote(str(p), safe="") for p in (project, *parts))])


# -- pure helpers ------------------------------------------------------------------------------------------------
def parse_ref(value: str, option: str) -> dict[str, Any]:
    """``NAME:VERSION`` as ``{"name": ..., "version": ...}``; anything else is a usage error of ``option``."""
    name, sep, version = value.rpartition(":")
    if not sep or not name or not version.isdigit() or int(version) < 1:
        raise typer.BadParameter(f"{value!r} is not NAME:VERSION (e.g. support-chats:3)", param_hint=f"'{option}'")
    return {"name": name, "version": int(version)}


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, lists, true) is taken as such, else as text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="'--set'")
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value
    return values


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


def when(timestamp: str | None) -> str:
    """An ISO 8601 time from the API, to the second: ``2026-01-31 12:00:00``."""
    return "" if not timestamp else timestamp.replace("T", " ")[:19]


def number(value: Any) -> str:
    """A metric for people: floats to 4 significant digits, big integers with separators."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def steps_text(job: dict[str, Any]) -> str:
    return f"{job['step']}/{job['max_steps']}" if job.get("max_steps") else str(job.get("step") or 0)


def _skip_hidden(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    return None if any(part in SKIPPED_DIRS for part in parts[1:]) else info


def pack(directory: Path, archive: Path) -> None:
    """Tar ``directory`` (a Hugging Face model directory) to ``archive``, its files under the directory's name.

    Links are followed: a directory of huggingface_hub's cache links its files to blobs outside it, which the
    service would refuse as links.
    """
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        fail(f"{directory} has no {', '.join(missing)}: it is not a Hugging Face model directory", code=2)
    with tarfile.open(archive, mode="w", dereference=True) as tar:
        tar.add(directory, arcname=directory.name or "model", filter=_skip_hidden)


# -- output ------------------------------------------------------------------------------------------------------
def base_models_table(items: list[dict[str, Any]]) -> Table:
    table = Table("name", "source", "architecture", "parameters", "size", "content / hub id", "created", "by")
    for m in items:
        if m["source"] == "hub":
            origin = f"{m['hub_id']}@{m.get('revision') or 'main'}"
        else:
            origin = f"sha256 {(m.get('manifest_sha256') or '')[:16]}…"
        table.add_row(
            escape(m["name"]),
            m["source"],
            escape(m.get("architecture") or ""),
            number(m.get("parameters")),
            decimal(m["size_bytes"]) if m.get("size_bytes") else "",
            escape(origin),
            when(m["created_at"]),
            escape(m["created_by"]),
        )
    return table


def models_table(items: list[dict[str, Any]]) -> Table:
    table = Table("model", "versions", "latest", "kind", "final loss", "aliases", "latest created")
    for model in items:
        latest = model["versions"][-1]
        aliases = ", ".join(f"{a['alias']}→v{a['version']}" for a in model["aliases"])
        table.add_row(
            escape(model["name"]),
            str(len(model["versions"])),
            f"v{latest['version']}",
            latest["kind"],
            number((latest.get("metrics") or {}).get("final_loss")),
            escape(aliases),
            when(latest["created_at"]),
        )
    return table


def versions_table(model: dict[str, Any]) -> Table:
    aliases: dict[int, list[str]] = {}
    for a in model["aliases"]:
        aliases.setdefault(a["version"], []).append(a["alias"])
    table = Table("version", "kind", "aliases", "final loss", "steps", "artifacts sha256", "job", "created")
    for v in model["versions"]:
        metrics = v.get("metrics") or {}
        table.add_row(
            str(v["version"]),
            v["kind"] + (" (+merged)" if v.get("merged_manifest_sha256") else ""),
            escape(", ".join(aliases.get(v["version"], []))),
            number(metrics.get("final_loss")),
            number(metrics.get("steps")),
            v["manifest_sha256"][:16] + "…",
            v["job_id"],
            when(v["created_at"]),
        )
    return table


def lineage_table(name: str, version: str, lineage: dict[str, Any], metrics: dict[str, Any] | None) -> Table:
    """Where a model version came from: base model, data, prompt, method, settings, software and results."""
    table = Table("", "", title=f"lineage of {name} {version}", title_justify="left", show_header=False)
    base = lineage.get("base_model") or {}
    if base.get("source") == "hub":
        origin = f"{base.get('hub_id')} (hub) at revision {base.get('resolved_revision') or base.get('revision')}"
    else:
        origin = f"uploaded, manifest sha256 {base.get('resolved_revision') or base.get('manifest_sha256')}"
    table.add_row("base model", escape(f"{base.get('name')}: {origin}"))
    dataset = lineage.get("dataset") or {}
    table.add_row(
        "dataset",
        escape(f"{dataset.get('name')} v{dataset.get('version')} ({dataset.get('split', 'train')} split)"),
    )
    table.add_row("dataset sha256", escape(str(dataset.get("sha256"))))
    now = lineage.get("dataset_now") or {}
    if now.get("deprecated"):
        table.add_row("[red]dataset now[/red]", escape(f"deprecated: {now.get('deprecated_reason')}"))
    prompt = lineage.get("prompt")
    table.add_row(
        "prompt",
        "none" if not prompt else escape(f"{prompt.get('name')} v{prompt.get('version')} ({prompt.get('hash', '')})"),
    )
    table.add_row("method", escape(str(lineage.get("method"))))
    hyperparameters = lineage.get("hyperparameters") or {}
    settings = ", ".join(f"{k}={number(v)}" for k, v in sorted(hyperparameters.items()) if v is not None)
    table.add_row("hyperparameters", escape(settings))
    table.add_row("job", escape(str(lineage.get("job_id"))))
    table.add_row("platform version", escape(str(lineage.get("platform_version"))))
    libraries = lineage.get("libraries") or {}
    if libraries:
        table.add_row("libraries", escape(", ".join(f"{k} {v}" for k, v in sorted(libraries.items()))))
    for key in SHOWN_METRICS:
        if (metrics or {}).get(key) is not None:
            table.add_row(key.replace("_", " "), number(metrics[key]))
    return table


def job_table(job: dict[str, Any]) -> Table:
    table = Table("", "", title=f"training job {job['id']}", title_justify="left", show_header=False)
    table.add_row("status", status_text(job["status"]))
    table.add_row("model", escape(job["model_name"]))
    table.add_row("method / pool", f"{job['method']} / {escape(job['pool'])}")
    table.add_row("step", steps_text(job))
    progress = job.get("progress") or {}
    if progress.get("loss") is not None:
        table.add_row("loss", number(progress["loss"]))
    if progress.get("tokens_per_second"):
        table.add_row("tokens/s", number(progress["tokens_per_second"]))
    table.add_row("requested", f"{when(job['created_at'])} by {escape(job['requested_by'])}")
    if job.get("started_at"):
        table.add_row("started", f"{when(job['started_at'])} on {escape(job.get('worker') or '')}")
    if job.get("attempt", 0) > 1 or job.get("resumed_from_step"):
        table.add_row("attempt", f"{job['attempt']} (resumed from step {job.get('resumed_from_step')})")
    if job.get("finished_at"):
        table.add_row("finished", when(job["finished_at"]))
    if job.get("cancel_requested_by"):
        table.add_row("cancelled by", escape(job["cancel_requested_by"]))
    for key in SHOWN_METRICS:
        if (job.get("metrics") or {}).get(key) is not None:
            table.add_row(key.replace("_", " "), number(job["metrics"][key]))
    if job.get("error"):
        table.add_row("[red]error[/red]", escape(job["error"]))
    return table


def jobs_table(items: list[dict[str, Any]]) -> Table:
    table = Table("id", "model", "status", "method", "pool", "step", "loss", "requested", "by")
    for job in items:
        table.add_row(
            job["id"],
            escape(job["model_name"]),
            status_text(job["status"]),
            job["method"],
            escape(job["pool"]),
            steps_text(job),
            number((job.get("progress") or {}).get("loss")),
            when(job["created_at"]),
            escape(job["requested_by"]),
        )
    return table


STATUS_COLOURS = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}


def status_text(status: str) -> str:
    colour = STATUS_COLOURS.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def log_line(line: dict[str, Any]) -> str:
    level = line["level"]
    shown = f"[red]{level}[/red]" if level == "error" else level
    worker = " " + escape(f"[{line['worker']}]") if line.get("worker") else ""
    return f"{when(line['at'])} {shown}{worker} {escape(line['message'])}"


# -- uploads -----------------------------------------------------------------------------------------------------
@contextmanager
def sending(path: Path, label: str) -> Iterator[Iterator[bytes]]:
    """The file's chunks as they are sent, with a progress bar; then a spinner while the service stores them."""
    progress = progress_bar()
    task = progress.add_task(f"uploading {escape(label)}", total=path.stat().st_size)
    waiting = err.status("the service is unpacking and storing the files")

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                yield chunk
                progress.advance(task, len(chunk))
        if progress.live.is_started:
            progress.stop()
        waiting.start()

    progress.start()
    try:
        yield chunks()
    finally:
        if progress.live.is_started:
            progress.stop()
        waiting.stop()


def upload_directory(directory: Path, project: str, name: str, url: str | None, token: str | None) -> dict[str, Any]:
    """Tar ``directory`` to a temporary file and upload it as base model ``name``; the registered base model."""
    with tempfile.TemporaryDirectory(prefix="llmops-base-model-") as scratch:
        archive = Path(scratch) / "model.tar"
        with err.status(f"packing {escape(str(directory))}"):
            pack(directory, archive)
        headers = {"content-type": TAR, "content-length": str(archive.stat().st_size)}
        with connect(url, token, timeout=UPLOAD_TIMEOUT) as client, sending(archive, directory.name) as chunks:
            path = api_path(project, "base-models", name, "upload")
            try:
                response = client.post(path, content=chunks, headers=headers)
            except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                fail(f"the connection to {client.base_url} broke during the upload: {exc}")
        return check(response).json()


def print_base_model(model: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(model)
        return
    out.print(f"registered base model [bold]{escape(model['name'])}[/bold] in project {escape(model['project'])}")
    out.print(base_models_table([model]))


# -- llmops models base ------------------------------------------------------------------------------------------
@base_app.command("register")
def base_register(
    project: ProjectOpt,
    name: Annotated[str, typer.Option("--name", help="the base model's name in the project")],
    directory: Annotated[
        Path | None,
        typer.Argument(help="a Hugging Face model directory (config.json, weights, tokenizer)", file_okay=False),
    ] = None,
    hub_id: Annotated[str | None, typer.Option("--hub-id", help="a Hugging Face hub id instead of a directory")] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="with --hub-id: branch, tag or commit (default main)")
    ] = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Register a base model: upload directory DIR, or name a hub model with --hub-id.

    DIR is packed as a tar and uploaded; the service stores its files content-addressed. A hub model is resolved by
    the worker; the revision it resolved to is recorded in the lineage of every model trained from it.
    """
    if (directory is None) == (hub_id is None):
        raise typer.BadParameter("give a model directory DIR or --hub-id, not both", param_hint="'DIR' / '--hub-id'")
    if revision is not None and hub_id is None:
        raise typer.BadParameter("--revision goes with --hub-id", param_hint="'--revision'")
    if directory is not None:
        if not directory.is_dir():
            fail(f"{directory} is not a directory", code=2)
        print_base_model(upload_directory(directory, project, name, url, token), as_json)
        return
    body = params(name=name, hub_id=hub_id, revision=revision)
    with connect(url, token) as client:
        model = check(client.post(api_path(project, "base-models"), json=body)).json()
    print_base_model(model, as_json)


@base_app.command("tiny")
def base_tiny(
    project: ProjectOpt,
    name: Annotated[str, typer.Option("--name", help="the base model's name in the project")] = "tiny",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="keep the model directory here (default: a temporary one)")
    ] = None,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Build a tiny Llama and its tokenizer (offline, deterministic) and register it.

    A base model of under a megabyte for trying the platform on a laptop; it trains in seconds on a CPU.
    """
    with tempfile.TemporaryDirectory(prefix="llmops-tiny-") as scratch:
        directory = out_dir or Path(scratch) / name
        with err.status("building the tiny model (importing torch takes a while)"):
            from llmops_training.ml.tiny import build_tiny_model  # torch and transformers: only here

            build_tiny_model(directory)
        err.print(f"built the tiny model in {escape(str(directory))}")
        print_base_model(upload_directory(directory, project, name, url, token), as_json)


def print_items(items: list[dict], as_json: bool, table: Callable[[list[dict]], Table], empty: str) -> None:
    """A listing: one JSON line per item, or a table, or (on stderr) what to do when there is nothing."""
    if as_json:
        for item in items:
            echo_json(item)
    elif not items:
        err.print(empty)
    else:
        out.print(table(items))


@base_app.command("list")
def base_list(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's base models."""
    with connect(url, token) as client:
        items = check(client.get(api_path(project, "base-models"))).json()
    print_items(
        items, as_json, base_models_table, "no base models: `llmops models base register` or `llmops models base tiny`"
    )


# -- llmops models -----------------------------------------------------------------------------------------------
@models_app.command("list")
def models_list(project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None) -> None:
    """The project's registered models: versions, the latest one's loss, aliases."""
    with connect(url, token) as client:
        items = check(client.get(api_path(project, "models"))).json()
    hint = "no models yet: a completed training job registers one (`llmops train start`)"
    print_items(items, as_json, models_table, hint)


@models_app.command("show")
def models_show(
    name: ModelName, project: ProjectOpt, as_json: AsJson = False, url: Url = None, token: Token = None
) -> None:
    """A model's versions (kind, loss, artifacts, job) and aliases."""
    with connect(url, token) as client:
        model = check(client.get(api_path(project, "models", name))).json()
    if as_json:
        echo_json(model)
        return
    out.print(f"[bold]{escape(model['name'])}[/bold] in project {escape(model['project'])}")
    out.print(versions_table(model))
    for a in model["aliases"]:
        out.print(f"alias {escape(a['alias'])} → v{a['version']} (moved {when(a['updated_at'])} by {a['updated_by']})")


@models_app.command("lineage")
def models_lineage(
    name: ModelName,
    version: Annotated[str, typer.Argument(help="a version number or an alias (e.g. candidate)")],
    project: ProjectOpt,
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Where a model version came from, and its metrics.

    Base model (content hash or hub revision), dataset version and sha256, prompt version, method, hyperparameters,
    platform and library versions.
    """
    with connect(url, token) as client:
        detail = check(client.get(api_path(project, "models", name, "versions", version))).json()
        lineage = check(client.get(api_path(project, "models", name, "versions", version, "lineage"))).json()
    if as_json:
        echo_json({"name": name, "version": detail["version"], "lineage": lineage, "metrics": detail["metrics"]})
        return
    out.print(lineage_table(name, f"v{detail['version']}", lineage, detail["metrics"]))


@models_app.command("alias")
def models_alias(
    name: ModelName,
    alias: Annotated[str, typer.Argument(help="the alias, e.g. candidate or production")],
    version: Annotated[int, typer.Argument(help="the version it points to", min=1)],
    project: ProjectOpt,
    reason: Annotated[str, typer.Option("--reason", help="why (recorded in the alias's history)")],
    as_json: AsJson = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Point an alias of a model at a version."""
    with connect(url, token) as client:
        path = api_path(project, "models", name, "aliases", alias)
        moved = check(client.put(path, json={"version": version, "reason": reason})).json()
    if as_json:
        echo_json(moved)
        return
    out.print(f"{escape(name)}: alias {escape(moved['alias'])} → v{moved['version']}")


# -- llmops train ------------------------------------------------------------------------------------------------
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
