"""Row-hash files: the sorted distinct row digests a version keeps, and the diff of two versions by merging theirs.

No numpy here: the ingest workers import this (the merge's compact set of digests is :mod:`llmops_datasets.digest_set`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from llmops_schemas.splits import DIGEST


def write_digests(path: Path, seen: set[bytes]) -> None:
    """The row-hash file: the distinct row digests, sorted (what :func:`diff` merges)."""
    with path.open("wb") as out:
        out.writelines(sorted(seen))


def digests(path: Path) -> Iterator[bytes]:
    """The sorted row digests of a row-hash file, streamed."""
    with path.open("rb") as handle:
        while chunk := handle.read(DIGEST * 4096):
            for i in range(0, len(chunk), DIGEST):
                yield chunk[i : i + DIGEST]


def diff(parent: Path, child: Path) -> dict[str, int]:
    """Rows added and removed between two versions, by merging their sorted row digests (distinct rows)."""
    added = removed = unchanged = 0
    old, new = digests(parent), digests(child)
    a, b = next(old, None), next(new, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a < b):
            removed += 1
            a = next(old, None)
        elif a is None or b < a:
            added += 1
            b = next(new, None)
        else:
            unchanged += 1
            a, b = next(old, None), next(new, None)
    return {"added": added, "removed": removed, "unchanged": unchanged}
