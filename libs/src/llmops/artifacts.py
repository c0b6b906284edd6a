"""Directories (models, adapters, checkpoints) in the content-addressed object store, as manifests.

Each file is stored under its sha256; the manifest (canonical JSON: relative path -> sha256 and size) is stored the
same way, and its sha256 names the whole directory. Identical files across checkpoints or versions are stored once.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import orjson

from llmops.storage import ObjectStore

MANIFEST_KIND = "llmops.directory.v1"


class ManifestError(ValueError):
    """A manifest that is not one (bad JSON, unsafe paths)."""


@dataclass(frozen=True)
class Manifest:
    sha256: str
    files: dict[str, dict]

    @property
    def size_bytes(self) -> int:
        return sum(entry["size"] for entry in self.files.values())


def _files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name != ".complete" and not p.name.endswith(".partial")
    )


async def put_directory(store: ObjectStore, directory: Path) -> Manifest:
    """Store every file of ``directory`` and its manifest; returns the manifest (its sha256 names the directory)."""
    files: dict[str, dict] = {}
    for path in _files(directory):
        stored = await store.put_file(path)
        files[path.relative_to(directory).as_posix()] = {"sha256": stored.sha256, "size": stored.size}
    if not files:
        raise ManifestError(f"{directory} holds no files")
    body = orjson.dumps({"kind": MANIFEST_KIND, "files": files}, option=orjson.OPT_SORT_KEYS)
    stored = await store.put_bytes(body, content_type="application/json")
    return Manifest(stored.sha256, files)


def parse_manifest(sha256: str, body: bytes) -> Manifest:
    """A manifest from its stored bytes, refusing paths that would leave the destination."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"manifest {sha256} is not JSON") from exc
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND or not isinstance(data.get("files"), dict):
        raise ManifestError(f"object {sha256} is not a directory manifest")
    for name in data["files"]:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ManifestError(f"manifest {sha256} names an unsafe path {name!r}")
    return Manifest(sha256, data["files"])


async def get_manifest(store: ObjectStore, sha256: str) -> Manifest:
    return parse_manifest(sha256, await store.get_bytes(sha256))


def _holds(marker: Path, sha256: str) -> bool:
    return marker.is_file() and marker.read_text() == sha256


async def fetch_directory(store: ObjectStore, sha256: str, destination: Path) -> Path:
    """Download the directory named by manifest ``sha256`` into ``destination`` (each file checked on the way).

    A directory fetched before (its ``.complete`` marker names the manifest) is reused: this is the worker's cache.
    """
    marker = destination / ".complete"
    if await asyncio.to_thread(_holds, marker, sha256):
        return destination
    manifest = await get_manifest(store, sha256)
    await asyncio.to_thread(shutil.rmtree, destination, True)
    for name, entry in manifest.files.items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        await store.download(entry["sha256"], target)
    await asyncio.to_thread(marker.write_text, sha256)
    return destination
