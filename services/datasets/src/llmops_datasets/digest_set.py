"""The compact set of distinct row digests the parallel merge de-duplicates with."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class DigestSet:
    """Distinct row digests, kept compact for the merge: numpy arrays of their two 64-bit halves (16 bytes a row,
    where a set of bytes objects takes about 100), ordered by the first half, in a large part and a recent one
    merged into it now and then, so that adding a block costs about the recent part's size, not the whole set's.
    Membership is asked and digests added a block at a time (``data``: digests back to back). Digests are hashes,
    so first halves almost never tie; when they do, every digest with that first half is compared."""

    RECENT = 256 * 1024  # digests (4 MiB) held apart before they are merged into the large part

    def __init__(self) -> None:
        self._large = self._recent = _EMPTY

    def __len__(self) -> int:
        return len(self._large[0]) + len(self._recent[0])

    def known(self, data: bytes) -> np.ndarray:
        """For each digest of ``data``, whether it is in the set."""
        digests = _halves(data)
        return _found(self._large, digests) | _found(self._recent, digests)

    def add(self, data: bytes, known: np.ndarray | None = None) -> None:
        """Add the digests of ``data`` (repeats and digests already in the set are ignored); ``known`` is what
        :meth:`known` answered for ``data``, when the caller already asked."""
        high, low = _halves(data)
        fresh = ~(self.known(data) if known is None else known)
        high, low = high[fresh], low[fresh]
        order = np.lexsort((low, high))
        high, low = high[order], low[order]
        first = np.ones(len(high), dtype=bool)  # the first of each run of equal digests
        first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
        self._recent = _merged(self._recent, (high[first], low[first]))
        if len(self._recent[0]) >= self.RECENT:
            self._large, self._recent = _merged(self._large, self._recent), _EMPTY

    def write(self, path: Path) -> None:
        """Every digest, in order, back to back, to ``path`` (a row-hash file), a slice at a time: the recent part
        is merged into the large one slice by slice, so no whole merged copy is ever made."""
        (high, low), (new_high, new_low) = self._large, self._recent
        at = np.searchsorted(high, new_high)  # where each recent digest goes among the large ones
        if _ties(high) or _ties(new_high) or (len(high) and (high[np.minimum(at, len(high) - 1)] == new_high).any()):
            # First halves tie (all but never): merge whole and order exactly by both halves.
            high, low = _merged(self._large, self._recent)
            order = np.lexsort((low, high))
            high, low, new_high, new_low, at = high[order], low[order], new_high[:0], new_low[:0], at[:0]
        with path.open("wb") as out:
            for start in range(0, max(len(high), 1), _SLICE):
                end = min(start + _SLICE, len(high))
                # The recent digests that go after large[start - 1] and before large[end] (the last slice: all left).
                first = np.searchsorted(at, start)
                last = len(at) if end == len(high) else np.searchsorted(at, end)
                where = at[first:last] - start
                halves = np.insert(high[start:end], where, new_high[first:last])
                seconds = np.insert(low[start:end], where, new_low[first:last])
                out.write(np.column_stack((halves, seconds)).astype(">u8").tobytes())


def _ties(high: np.ndarray) -> bool:
    return len(high) > 1 and bool((high[1:] == high[:-1]).any())


_SLICE = 64 * 1024  # digests written at once


Halves = tuple[np.ndarray, np.ndarray]  # the first and second 8 bytes of digests, as unsigned integers
_EMPTY: Halves = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64))


def _halves(data: bytes) -> Halves:
    both = np.frombuffer(data, dtype=">u8").reshape(-1, 2).astype(np.uint64)  # big-endian: ordered as bytes are
    return both[:, 0], both[:, 1]


def _found(present: Halves, digests: Halves) -> np.ndarray:
    high, low = present
    found = np.zeros(len(digests[0]), dtype=bool)
    if not len(high):
        return found
    start = np.searchsorted(high, digests[0], side="left")
    end = np.searchsorted(high, digests[0], side="right")
    one = (end - start) == 1
    found[one] = low[start[one]] == digests[1][one]
    for i in np.flatnonzero((end - start) > 1):  # first halves that tie: compare every candidate
        found[i] = bool((low[start[i] : end[i]] == digests[1][i]).any())
    return found


def _merged(a: Halves, b: Halves) -> Halves:
    """Two parts as one, ordered by first half (b's digests inserted where they belong: linear, not a new sort)."""
    if not len(a[0]):
        return b
    at = np.searchsorted(a[0], b[0])
    return np.insert(a[0], at, b[0]), np.insert(a[1], at, b[1])
