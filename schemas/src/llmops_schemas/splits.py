"""How a dataset version's train/validation/test splits are derived: part of the ``dataset.version.created`` contract.

Splits are never stored: any consumer recomputes them from the version's canonical JSONL (one row per line) with the
``splits`` recorded in the event (fractions and seed), so the datasets service and a training worker always agree.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DIGEST = 16  # bytes of a row's sha256 kept for de-duplication, diffs and split assignment
SPLITS = ("train", "validation", "test")


class SplitConfig(BaseModel):
    """Deterministic train/validation/test assignment by row hash and seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)
    seed: int = Field(default=42, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-9:
            raise ValueError("train + validation + test must be 1")
        return self

    @classmethod
    def of_version(cls, splits: dict) -> SplitConfig:
        """The split configuration recorded in a version's ``splits`` (which also holds the counts)."""
        return cls(**{key: splits[key] for key in ("train", "validation", "test", "seed")})

    @functools.cached_property
    def _keyed(self) -> Any:
        """BLAKE2b with the seed as key, absorbed once: each row copies this state (split_index runs for every row)."""
        return hashlib.blake2b(digest_size=8, key=self.seed.to_bytes(8, "big"))

    @functools.cached_property
    def _bounds(self) -> tuple[bytes, bytes]:
        """Where train ends and where validation ends, as 8-byte values a keyed hash is compared to."""
        return point_bound(self.train), point_bound(self.train + self.validation)

    def split_index(self, row_digest: bytes) -> int:
        """The split of a row as its index in :data:`SPLITS`: a keyed hash (BLAKE2b, key = seed) of its digest, as
        a point in [0, 1) (the 8 bytes big-endian, scaled by 2**-64: exactly the float of dividing by 2**64), below
        ``train`` for train, then below ``train + validation`` for validation. The point is never computed: the
        hash's bytes are compared with the bytes where each split ends (:func:`point_bound`), which is the same."""
        state = self._keyed.copy()
        state.update(row_digest)
        point = state.digest()
        train, validation = self._bounds
        return 0 if point < train else 1 if point < validation else 2

    def split_of(self, row_digest: bytes) -> str:
        """The name of a row's split (see :meth:`split_index`)."""
        return SPLITS[self.split_index(row_digest)]


def point_bound(fraction: float) -> bytes:
    """The least 64-bit value whose point (the value as a float, times 2**-64) is at least ``fraction``, as 8 bytes
    big-endian: a value's point is below ``fraction`` exactly when its 8 bytes sort before these. Nine bytes that
    every 8-byte value sorts before when there is no such value (``fraction`` past the last point)."""
    target = fraction * 2.0**64  # exact: scaling by a power of two
    low, high = 0, 2**64  # float(value) only grows with value: search the least one with float(value) >= target
    while low < high:
        middle = (low + high) // 2
        if float(middle) >= target:
            high = middle
        else:
            low = middle + 1
    return low.to_bytes(8, "big") if low < 2**64 else b"\xff" * 9


def row_digest(line: bytes) -> bytes:
    """The digest of one canonical row (its line in the cleaned file, newline included)."""
    return hashlib.sha256(line).digest()[:DIGEST]


def split_lines(lines: Iterable[bytes], split: SplitConfig, name: str) -> Iterator[bytes]:
    """The lines (newline included) of one split, from the lines of a version's canonical JSONL."""
    for line in lines:
        if split.split_of(row_digest(line)) == name:
            yield line
