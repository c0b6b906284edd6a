"""`llmops models download`: a registered model version written out as a plain Hugging Face directory.

The service answers with the version's files and presigned URLs (``GET .../versions/{version}/files``); the files
come straight from the object store, each checked against its sha256. torch, transformers and peft are imported only
when an adapter is merged here.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from llmops.cli_kit import api_path
from llmops.client import TIMEOUT, Token, err, fail, out, progress_bar
from llmops.model_files import (
    DestinationNotEmpty,
    LinkExpired,
    ModelFile,
    ModelFilesError,
    merge_adapter,
    model_files,
    point_adapter_at,
    presigned_fetch,
    write_hf_directory,
)
from llmops_training.cli.common import ModelName, ProjectOpt, Url, check, connect

BASE = "base"


def models_download(
    name: ModelName,
    version: Annotated[str, typer.Argument(help="a version number or an alias (e.g. production)", metavar="VERSION")],
    directory: Annotated[
        Path, typer.Argument(help="where to write the model (a new or empty directory)", metavar="DIR")
    ],
    project: ProjectOpt,
    merged: Annotated[
        bool, typer.Option("--merged", help="an adapter merged into its base: the stored merge, else merged here")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Download a model version into DIR as a Hugging Face directory that transformers and peft load as it is.

    A full model: its files. An adapter: its files, with adapter_config.json pointing at its base (the hub id, or
    DIR/base when the base was uploaded, downloaded there). With --merged: the adapter merged into its base (the merge
    training stored, else one made here).
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        fail(f"{directory} is not empty: choose a new or empty directory")
    with connect(url, token) as client:
        found = check(client.get(api_path(project, "models", name, "versions", version, "files"))).json()
    out.print(download(found, directory, merged=merged), highlight=False)


def download(found: dict[str, Any], directory: Path, *, merged: bool) -> str:
    """Write the model the service described (``found``) into ``directory``; the line saying what was written and how
    to load it. Expired links, bad bytes or a directory filled meanwhile end the command (exit 1)."""
    directory = directory.absolute()
    label = f"{found['model']} v{found['version']}"
    try:
        if found["kind"] == "full" or (merged and found["merged"] is not None):
            files = found["merged"]["files"] if found["kind"] != "full" else found["files"]
            _fetch(model_files(files), directory, f"downloading {label}")
            what = "merged model" if found["kind"] == "adapter" else "full model"
            return f"wrote {label} ({what}) to {directory}\nload it with: {_load_full(directory)}"
        if merged:
            _merge_here(found, directory, label)
            return f"wrote {label} (merged here into its base) to {directory}\nload it with: {_load_full(directory)}"
        return _adapter(found, directory, label)
    except LinkExpired:
        fail(f"the download links of {label} expired before every file arrived; run the command again")
    except DestinationNotEmpty:
        fail(f"{directory} is not empty: choose a new or empty directory")
    except ModelFilesError as exc:
        fail(f"{label} did not download intact: {exc}")
    except (httpx.HTTPStatusError, httpx.TransportError) as exc:
        fail(f"cannot fetch the files of {label}: {exc}")


def _adapter(found: dict[str, Any], directory: Path, label: str) -> str:
    base = found["base_model"]
    files = model_files(found["files"])
    if base["hub_id"]:
        target: str | Path = base["hub_id"]
        where = f"base: hub model {base['hub_id']}" + (f"@{base['revision']}" if base["revision"] else "")
    else:
        files += model_files(base["files"], prefix=f"{BASE}/")
        target, where = directory / BASE, f"base in {directory / BASE}"

    def finish(staging: Path) -> None:
        point_adapter_at(staging, target, revision=base["revision"])

    _fetch(files, directory, f"downloading {label}", finish=finish)
    load = f"from peft import AutoPeftModelForCausalLM; AutoPeftModelForCausalLM.from_pretrained({str(directory)!r})"
    return f"wrote {label} (adapter; {where}) to {directory}\nload it with: {load}"


def _merge_here(found: dict[str, Any], directory: Path, label: str) -> None:
    """Download the adapter (and an uploaded base) beside ``directory``, merge them into it, remove the download."""
    base = found["base_model"]
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}.merge-", dir=directory.parent))
    try:
        files = model_files(found["files"], prefix="adapter/")
        if not base["hub_id"]:
            files += model_files(base["files"], prefix=f"{BASE}/")
        _fetch(files, scratch / "files", f"downloading {label} and its base")
        source = base["hub_id"] or scratch / "files" / BASE
        with err.status(f"merging {escape(label)} into its base (importing torch takes a while)"):
            merge_adapter(source, scratch / "files" / "adapter", directory, revision=base["revision"])
    finally:
        shutil.rmtree(scratch, True)


def _fetch(files: list[ModelFile], directory: Path, label: str, *, finish=None) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:  # no bearer token: the URLs carry their signatures
            with progress_bar() as progress:
                task = progress.add_task(escape(label), total=sum(f.size for f in files))
                await write_hf_directory(
                    files,
                    directory,
                    presigned_fetch(http),
                    on_bytes=lambda n: progress.advance(task, n),
                    finish=finish,
                )

    asyncio.run(run())


def _load_full(directory: Path) -> str:
    return f"from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained({str(directory)!r})"
