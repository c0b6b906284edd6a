"""`llmops models ...`: base models (a directory packed and uploaded, a hub id, the tiny one) and the model registry
(versions, lineage, aliases)."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from llmops.cli_kit import UPLOAD_TIMEOUT, AsJson, api_path, post_file, print_items, when
from llmops.client import Token, echo_json, err, fail, out, params
from llmops_training.cli.common import ModelName, ProjectOpt, Url, check, connect
from llmops_training.cli.download import models_download
from llmops_training.cli.tables import base_models_table, lineage_table, models_table, versions_table

models_app = typer.Typer(
    help="Models: base models and the model registry (versions, lineage, aliases).", no_args_is_help=True
)
base_app = typer.Typer(
    help="Base models: register a model directory or a hub id, build the tiny one, list.", no_args_is_help=True
)
models_app.add_typer(base_app, name="base")

TAR = "application/x-tar"
#: What a Hugging Face model directory must hold (the service refuses it otherwise; checked before packing).
REQUIRED_FILES = ("config.json",)
#: Folders of a model directory that are not the model (git metadata, huggingface_hub's download cache).
SKIPPED_DIRS = frozenset({".git", ".cache"})


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


def upload_directory(directory: Path, project: str, name: str, url: str | None, token: str | None) -> dict[str, Any]:
    """Tar ``directory`` to a temporary file and upload it as base model ``name``; the registered base model."""
    with tempfile.TemporaryDirectory(prefix="llmops-base-model-") as scratch:
        archive = Path(scratch) / "model.tar"
        with err.status(f"packing {escape(str(directory))}"):
            pack(directory, archive)
        headers = {"content-type": TAR, "content-length": str(archive.stat().st_size)}
        with connect(url, token, timeout=UPLOAD_TIMEOUT) as client:
            path = api_path(project, "base-models", name, "upload")
            waiting = "the service is unpacking and storing the files"
            response = post_file(client, path, archive, label=directory.name, waiting=waiting, headers=headers)
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
            from llmops.tiny_model import build_tiny_model  # torch and transformers: only here

            build_tiny_model(directory)
        err.print(f"built the tiny model in {escape(str(directory))}")
        print_base_model(upload_directory(directory, project, name, url, token), as_json)


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


models_app.command("download")(models_download)
