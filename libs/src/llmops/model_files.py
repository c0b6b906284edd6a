"""A registered model's files written back out as a plain Hugging Face directory, and an adapter merged into its base.

Used by ``llmops models download`` (files fetched over presigned HTTPS) and by anything that fetches from the object
store itself (a serving worker): :func:`write_hf_directory` takes the fetching as a function. No web framework here;
torch, transformers and peft are imported only by :func:`merge_adapter` when it runs.

An adapter's ``adapter_config.json`` names the base model it was trained on as the training worker saw it (a path in
the worker's cache). :func:`point_adapter_at` rewrites it to what plain peft can load: the base's hub id, or the
absolute path of the base's downloaded directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from llmops.storage import ObjectStore

ADAPTER_CONFIG = "adapter_config.json"
#: Written last into a merged model directory of the cache: the (base, adapter) it was merged from.
COMPLETE = ".complete"


class ModelFilesError(ValueError):
    """Files that cannot be written as given: an unsafe or repeated path, or bytes that are not the file's."""


class DestinationNotEmpty(FileExistsError):
    """The destination directory already holds something; nothing is overwritten."""


class LinkExpired(PermissionError):
    """A presigned URL was refused because its time is up; ask for the files again."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model directory: where it goes (relative, POSIX), its sha256 and size, and where to fetch it."""

    path: str
    sha256: str
    size: int
    url: str | None = None


Fetch = Callable[[ModelFile], AsyncIterator[bytes]]


def model_files(entries: Iterable[dict], *, prefix: str = "") -> list[ModelFile]:
    """Files from the API's ``[{path, sha256, size, url}]`` (or a manifest's items), their paths under ``prefix``."""
    return [
        ModelFile(prefix + e["path"], e["sha256"], int(e["size"]), e.get("url"))
        for e in sorted(entries, key=lambda e: e["path"])
    ]


def _safe(path: str) -> PurePosixPath:
    parts = PurePosixPath(path)
    if not path or "\\" in path or parts.is_absolute() or any(p in ("", ".", "..") for p in path.split("/")):
        raise ModelFilesError(f"unsafe path {path!r}: a file must stay inside the model directory")
    return parts


def _staging_for(dest: Path) -> tuple[Path, Path]:
    """``dest`` made absolute, once checked empty or missing, and a new temporary directory beside it."""
    dest = dest.absolute()
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise DestinationNotEmpty(f"{dest} is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest, Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))


async def write_hf_directory(
    files: Iterable[ModelFile],
    dest: Path,
    fetch: Fetch,
    *,
    on_bytes: Callable[[int], None] | None = None,
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``files`` into ``dest`` (missing or empty), each fetched with ``fetch`` and checked against its sha256
    and size; returns ``dest``.

    The files are written into a temporary directory beside ``dest``, which is renamed to ``dest`` once all are
    there and ``finish`` (given the temporary directory) has run: ``dest`` is complete or absent, never half
    written. ``on_bytes`` is told of each chunk's size (a progress bar). Raises :class:`ModelFilesError` for an
    unsafe path or bytes that are not the file's, :class:`DestinationNotEmpty` when ``dest`` holds anything.
    """
    files = list(files)
    seen: set[PurePosixPath] = set()
    for file in files:
        path = _safe(file.path)
        if path in seen:
            raise ModelFilesError(f"{file.path!r} is named twice")
        seen.add(path)
    dest, staging = await asyncio.to_thread(_staging_for, Path(dest))
    try:
        for file in files:
            await _write_one(file, staging / file.path, fetch, on_bytes)
        if finish is not None:
            await asyncio.to_thread(finish, staging)
        await asyncio.to_thread(_move_into_place, staging, dest)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, staging, True)
        raise
    return dest


async def _write_one(file: ModelFile, target: Path, fetch: Fetch, on_bytes: Callable[[int], None] | None) -> None:
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with await asyncio.to_thread(target.open, "wb") as out:
        async for chunk in fetch(file):
            size += len(chunk)
            if size > file.size:
                raise ModelFilesError(f"{file.path} is longer than its {file.size} bytes")
            digest.update(chunk)
            await asyncio.to_thread(out.write, chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    if size != file.size or digest.hexdigest() != file.sha256:
        raise ModelFilesError(
            f"{file.path} arrived as {size} bytes with sha256 {digest.hexdigest()}, "
            f"not {file.size} bytes with sha256 {file.sha256}"
        )


def _move_into_place(staging: Path, dest: Path) -> None:
    if dest.is_dir():
        dest.rmdir()  # empty (checked before); fails if something appeared there since
    os.rename(staging, dest)


# -- where the bytes come from -----------------------------------------------------------------------------------
def presigned_fetch(client: httpx.AsyncClient) -> Fetch:
    """Fetch each file from its presigned ``url`` with ``client``, streamed; a refused expired link raises
    :class:`LinkExpired`, any other failed answer ``httpx.HTTPStatusError``."""

    async def fetch(file: ModelFile) -> AsyncIterator[bytes]:
        if file.url is None:
            raise ModelFilesError(f"{file.path} has no URL to fetch it from")
        async with client.stream("GET", file.url) as response:
            if response.status_code in (400, 403):
                body = (await response.aread()).decode(errors="replace")
                if "expired" in body.lower():
                    raise LinkExpired(f"the link to {file.path} has expired")
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                yield chunk

    return fetch


def store_fetch(store: ObjectStore) -> Fetch:
    """Fetch each file straight from the object store by its sha256 (a worker inside the platform)."""

    def fetch(file: ModelFile) -> AsyncIterator[bytes]:
        return store.stream(file.sha256)

    return fetch


# -- an adapter's base ---------------------------------------------------------------------------------------------
def point_adapter_at(adapter_dir: Path, base: str | Path, *, revision: str | None = None) -> None:
    """Rewrite ``adapter_config.json``'s ``base_model_name_or_path`` to ``base``: a hub id (its ``revision`` recorded
    too, which ``AutoPeftModelForCausalLM`` loads), or a base directory (written as its absolute path: moving the
    directories breaks it), so that plain peft finds the base. A directory without an adapter config is left alone.
    """
    config_path = Path(adapter_dir) / ADAPTER_CONFIG
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    hub = not isinstance(base, Path)
    config["base_model_name_or_path"] = base if hub else str(base.absolute())
    config["revision"] = revision if hub else None
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# -- merging -------------------------------------------------------------------------------------------------------
def merged_cache_path(cache_root: Path, base_sha: str, adapter_sha: str) -> Path:
    """Where the merge of adapter ``adapter_sha`` into base ``base_sha`` (manifest hashes, or a hub id@revision for
    the base) is kept: one directory per pair of contents, so that each pair is merged once."""
    key = hashlib.sha256(f"{base_sha}\n{adapter_sha}".encode()).hexdigest()
    return Path(cache_root) / "merged" / key


def merge_adapter(
    base_dir: str | Path, adapter_dir: Path, out_dir: Path, *, revision: str | None = None, marker: str | None = None
) -> Path:
    """Merge the LoRA adapter in ``adapter_dir`` into its base (a directory, or a hub id at ``revision``) and save
    the merged model with a tokenizer (the adapter's, which training saved, else the base's; chat template
    included) to ``out_dir``; returns ``out_dir``.

    Written into a temporary directory beside ``out_dir`` then renamed, so ``out_dir`` is never half written. With
    ``marker`` (a cache), ``out_dir`` holding a ``.complete`` file of that text is taken as done and returned at
    once, and a merge finished first by another process wins over this one.
    """
    out_dir = Path(out_dir).absolute()
    if marker is not None and _holds(out_dir, marker):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _merge(str(base_dir), Path(adapter_dir), staging, revision)
        if marker is not None:
            (staging / COMPLETE).write_text(marker)
        try:
            _move_into_place(staging, out_dir)
        except OSError:
            if marker is not None and _holds(out_dir, marker):  # another process merged the same pair first
                shutil.rmtree(staging, True)
                return out_dir
            raise
    except BaseException:
        shutil.rmtree(staging, True)
        raise
    return out_dir


def _holds(directory: Path, marker: str) -> bool:
    path = directory / COMPLETE
    return path.is_file() and path.read_text() == marker


def _merge(base: str, adapter_dir: Path, out_dir: Path, revision: str | None) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, revision=revision, dtype="auto")  # the weights as stored
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    has_tokenizer = any((adapter_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir) if has_tokenizer else base, revision=revision)
    tokenizer.save_pretrained(str(out_dir))
