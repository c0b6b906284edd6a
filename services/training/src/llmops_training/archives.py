"""Uploaded base models: a plain tar of a Hugging Face model directory, checked within limits before anything is
unpacked, and described from its config and safetensors headers (read by the safetensors library, which caps them).
"""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from safetensors import SafetensorError, safe_open

from llmops.errors import Problem

#: What a Hugging Face model directory must hold to be a base model.
REQUIRED_FILES = ("config.json",)
#: A model's config.json is a few kilobytes; anything far larger is not one.
MAX_CONFIG_BYTES = 1024**2
#: The first bytes of the compressed formats tarfile would otherwise unpack on the fly (a small upload could expand
#: to far more than its size).
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.FIFOTYPE: "a FIFO"}


def _refuse_compressed(archive: Path) -> None:
    with archive.open("rb") as handle:
        start = handle.read(8)
    for magic, kind in COMPRESSED.items():
        if start.startswith(magic):
            raise Problem(
                422,
                f"the upload is {kind}-compressed: send a plain (uncompressed) tar; compressed archives are refused",
            )


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "a device"
    return _KINDS.get(member.type, f"of tar type {member.type!r}")


def _checked_members(tar: tarfile.TarFile, *, max_bytes: int, max_members: int) -> list[tarfile.TarInfo]:
    """Every member's header, read without its data: regular files and directories only, inside the archive,
    within the member count and their sizes' sum within ``max_bytes``."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:  # reads one header at a time and seeks past the data
        if len(members) == max_members:
            raise Problem(422, f"the archive has more than {max_members} members (the limit)")
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise Problem(422, f"the archive's member {member.name!r} points outside the model directory")
        if not (member.isreg() or member.isdir()):
            raise Problem(
                422, f"the archive's member {member.name!r} is {_kind(member)}; only files and directories are accepted"
            )
        total += member.size if member.isreg() else 0
        if total > max_bytes:
            raise Problem(
                413,
                f"the archive's files are larger than the limit of {max_bytes} bytes "
                f"(reached at member {member.name!r}, {member.size} bytes)",
            )
        members.append(member)
    return members


def extract(archive: Path, destination: Path, *, max_bytes: int, max_members: int) -> Path:
    """Unpack a plain tar of a model directory (files only, nothing outside ``destination``); its root is returned.

    Every member is checked before anything is written; a violation is a problem naming the member and the limit.
    """
    _refuse_compressed(archive)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = _checked_members(tar, max_bytes=max_bytes, max_members=max_members)
            tar.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise Problem(422, f"the upload is not a readable tar archive of a model directory: {exc}") from exc
    entries = list(destination.iterdir()) if destination.is_dir() else []
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else destination
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise Problem(
            422, f"the model directory has no {', '.join(missing)} (a Hugging Face model directory is needed)"
        )
    return root


def _parameters(path: Path) -> int:
    try:
        with safe_open(path, framework="numpy") as tensors:
            names = tensors.keys()  # the object itself is not iterable
            return sum(math.prod(tensors.get_slice(name).get_shape()) for name in names)
    except SafetensorError as exc:
        raise Problem(422, f"{path.name} is not a readable safetensors file: {exc}") from exc


def describe(directory: Path) -> dict[str, Any]:
    """Architecture and parameter count of a model directory, read from its config and safetensors headers."""
    config_path = directory / "config.json"
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise Problem(422, f"config.json is larger than {MAX_CONFIG_BYTES} bytes; it is not a model's config")
    try:
        config = json.loads(config_path.read_bytes())
    except ValueError as exc:
        raise Problem(422, f"config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise Problem(422, "config.json is not a JSON object")
    parameters = sum(_parameters(path) for path in sorted(directory.glob("*.safetensors")))
    architectures = config.get("architectures") or [config.get("model_type")]
    return {"architecture": architectures[0], "parameters": parameters or None}
