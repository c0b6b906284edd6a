"""A replica's model files on the worker's disk, from the content-addressed cache when fetched before: a full model as
it is; an adapter either beside its base (for backends that load LoRA adapters themselves) or merged into it (the
stored merged model when training kept one, else merged here once per base and adapter, and cached)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from llmops import artifacts
from llmops.logging import get_logger
from llmops.model_files import merge_adapter, merged_cache_path
from llmops.storage import ObjectStore
from llmops_schemas.events.deployments import ServedModel
from llmops_schemas.events.training import BaseModelRef

log = get_logger(__name__)


class ArtifactError(RuntimeError):
    """A replica's files cannot be had (missing from the store, unknown on the hub, a merge that failed)."""


@dataclass(frozen=True)
class ModelFiles:
    """What a backend serves: ``model_dir`` (a full or merged model, or the base when ``adapter_dir`` is set),
    ``model_hash`` the manifest (or merge key) naming those files, and the adapter's name and LoRA rank."""

    model_dir: Path
    model_hash: str
    adapter_dir: Path | None = None
    adapter_name: str | None = None
    lora_rank: int | None = None


async def model_files(store: ObjectStore, served: ServedModel, cache_dir: Path, *, merged: bool) -> ModelFiles:
    """The files to serve ``served`` with; ``merged``: the backend needs an adapter merged into its base."""
    try:
        if served.kind == "full":
            own = await _fetch(store, served.manifest_sha256, cache_dir)
            return ModelFiles(own, served.manifest_sha256)
        if merged and served.merged_manifest_sha256 is not None:
            stored = await _fetch(store, served.merged_manifest_sha256, cache_dir)
            return ModelFiles(stored, served.merged_manifest_sha256)
        base_dir, base_key = await _base(store, served.base_model, cache_dir)
        adapter_dir = await _fetch(store, served.manifest_sha256, cache_dir)
        if not merged:
            name = f"{served.name}-v{served.version}"
            return ModelFiles(base_dir, served.manifest_sha256, adapter_dir, name, _lora_rank(adapter_dir))
        out = merged_cache_path(cache_dir, base_key, served.manifest_sha256)
        await asyncio.to_thread(merge_adapter, base_dir, adapter_dir, out, marker=out.name)
        return ModelFiles(out, out.name)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"the files of {served.name} v{served.version} cannot be had: {exc}") from exc


async def _fetch(store: ObjectStore, sha256: str, cache_dir: Path) -> Path:
    return await artifacts.fetch_directory(store, sha256, cache_dir / sha256)


async def _base(store: ObjectStore, base: BaseModelRef, cache_dir: Path) -> tuple[Path, str]:
    """The base model's directory and the key naming its files (its manifest, or a hash of the hub id@revision)."""
    if base.source == "upload":
        if base.manifest_sha256 is None:
            raise ArtifactError(f"base model {base.name!r} has no files")
        return await _fetch(store, base.manifest_sha256, cache_dir), base.manifest_sha256
    if not base.hub_id:
        raise ArtifactError(f"base model {base.name!r} names no hub id")
    path = await asyncio.to_thread(_from_hub, base.hub_id, base.revision, cache_dir / "hub")
    return path, hashlib.sha256(f"hub:{base.hub_id}@{base.revision or 'main'}".encode()).hexdigest()


def _from_hub(hub_id: str, revision: str | None, cache: Path) -> Path:
    # snapshot_download honours HF_HUB_OFFLINE itself (then it only resolves what the cache holds).
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, revision=revision, cache_dir=cache))
    except Exception as exc:
        raise ArtifactError(f"cannot resolve base model {hub_id!r} (revision {revision}) from the hub: {exc}") from exc


def _lora_rank(adapter_dir: Path) -> int | None:
    config = adapter_dir / "adapter_config.json"
    try:
        rank = json.loads(config.read_text()).get("r")
    except (OSError, ValueError):
        return None
    return rank if isinstance(rank, int) else None
