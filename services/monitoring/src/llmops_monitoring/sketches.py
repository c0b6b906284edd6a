"""Mergeable percentile sketches: a thin wrapper over DataDog's DDSketch that stores as small JSON.

Percentiles of many buckets are found by merging their sketches, never by averaging their percentiles. A sketch keeps
a count per logarithmic bin, so merging is adding counts: exact, associative and commutative.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from ddsketch import LogarithmicMapping
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.store import DenseStore

#: DDSketch's relative accuracy (its alpha). For a quantile q of n values, the sketch picks the value of rank
#: k = floor(q * (n - 1)) in sorted order (numpy's ``method="lower"``) and returns its bin's representative, which is
#: within 1% of that value: ``abs(returned - x[k]) <= RELATIVE_ACCURACY * x[k]``. Zeros are counted apart, exactly.
RELATIVE_ACCURACY = 0.01


class Sketch:
    """A quantile sketch of non-negative values (latencies in ms, token counts, text lengths).

    DDSketch itself keeps no public min or max and cannot be rebuilt with its sum, so this wrapper keeps count, sum,
    min and max itself and gives DDSketch only the bins.
    """

    __slots__ = ("_sketch", "max", "min", "sum")

    def __init__(self) -> None:
        # made at the first value: most sketches stay empty (a per-user bucket's five), and an empty DDSketch costs
        self._sketch: BaseDDSketch | None = None
        self.sum = 0.0
        self.min: float | None = None
        self.max: float | None = None

    @property
    def count(self) -> int:
        return 0 if self._sketch is None else int(self._sketch.count)

    def add(self, value: float) -> None:
        self.add_many((value,))

    def add_many(self, values: Sequence[float]) -> None:
        """Add many values at once: their bin keys computed together (:func:`bin_keys`, as for any value however it
        is added), each bin added once with its count, their sum taken in order (as adding them one by one would)."""
        array = _checked(values)
        if not len(array):
            return
        positive = array[array > _MAPPING.min_possible]
        keys, counts = np.unique(bin_keys(positive), return_counts=True)
        sketch = self._ddsketch()
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            sketch._store.add(key, float(count))
        sketch._zero_count += float(len(array) - len(positive))
        low, high = float(array.min()), float(array.max())
        sketch._count += float(len(array))
        sketch._sum += float(array.sum())
        sketch._min, sketch._max = min(sketch._min, low), max(sketch._max, high)
        # in order, as adding them one by one does (np.sum adds pairwise), so that any way of counting them agrees
        self.sum = float(np.cumsum(np.concatenate(([self.sum], array)))[-1])
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)

    def merge(self, other: Sketch) -> None:
        """Add ``other``'s values to this sketch (``other`` is left as it was)."""
        if other.count == 0:
            return
        self._ddsketch().merge(other._ddsketch())
        self.sum += other.sum
        self.min = other.min if self.min is None else min(self.min, other.min)  # type: ignore[type-var]
        self.max = other.max if self.max is None else max(self.max, other.max)  # type: ignore[type-var]

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1) within ``RELATIVE_ACCURACY``; None when the sketch is empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"a quantile is between 0 and 1, got {q!r}")
        value = None if self._sketch is None else self._sketch.get_quantile_value(q)
        return None if value is None else float(value)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def copy(self) -> Sketch:
        return Sketch.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The sketch as a compact JSON object: only the bins that hold values (keys ascending, with their counts)."""
        # DDSketch has no public accessor for its bins or zero count: its store's bins are read as its merge reads them
        sketch = self._sketch
        store = DenseStore() if sketch is None else sketch._store
        held = [(index + store.offset, int(count)) for index, count in enumerate(store.bins) if count]
        keys = [key for key, _ in held]
        counts = [count for _, count in held]
        return {
            "k": keys,
            "n": counts,
            "z": 0 if sketch is None else int(sketch._zero_count),
            "c": self.count,
            "s": self.sum,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sketch:
        if len(data["k"]) != len(data["n"]):
            raise ValueError("a sketch's bin keys and counts differ in length")
        keys, bins = data["k"], []
        if keys:  # the store's bins set whole (adding key by key grows and shifts them at every step)
            if any(b <= a for a, b in pairwise(keys)):
                raise ValueError("a sketch's bin keys are not ascending")
            low = int(keys[0])
            bins = [0.0] * (int(keys[-1]) - low + 1)
            for key, count in zip(keys, data["n"], strict=True):
                bins[int(key) - low] = float(count)
        sketch = cls._of_bins(keys[0] if keys else 0, bins, data["z"], data["s"], data["min"], data["max"])
        if sketch.count != data["c"]:
            raise ValueError(f"a sketch's bins hold {sketch.count} values, its count says {data['c']}")
        return sketch

    @classmethod
    def _of_bins(
        cls, offset: int, bins: list[float], zeros: float, total: float, low: float | None, high: float | None
    ) -> Sketch:
        """A sketch of its parts: ``bins`` the counts of the keys from ``offset`` on."""
        sketch = cls()
        if bins or zeros:  # else left empty, as cls() is
            store = DenseStore()
            if bins:
                store.bins, store.offset = bins, int(offset)
                store.min_key, store.max_key = int(offset), int(offset) + len(bins) - 1
                store.count = float(sum(bins))
            sketch._sketch = _empty(zero_count=float(zeros), store=store)
        sketch.sum = float(total)
        sketch.min = None if low is None else float(low)
        sketch.max = None if high is None else float(high)
        return sketch

    def _ddsketch(self) -> BaseDDSketch:
        if self._sketch is None:
            self._sketch = _empty(zero_count=0.0)
        return self._sketch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Sketch(count={self.count}, p50={self.quantile(0.5)}, max={self.max})"


#: One mapping for every sketch: it holds constants only (and every sketch must share them to be merged)
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)


def _empty(zero_count: float, store: DenseStore | None = None) -> BaseDDSketch:
    # DDSketch(relative_accuracy) built from its parts, so a stored sketch's bins and zero count can be given back
    return BaseDDSketch(
        mapping=_MAPPING,
        store=store if store is not None else DenseStore(),
        negative_store=DenseStore(),
        zero_count=zero_count,
    )


def _checked(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    refused = ~((array >= 0) & (array < np.inf))  # NaN too; and infinity, which has no bin
    if refused.any():
        raise ValueError(f"a sketch takes finite values >= 0, got {array[refused][0]!r}")
    return array


def bin_keys(values: np.ndarray) -> np.ndarray:
    """The bin key of each value (each above the mapping's smallest: the smaller are zeros). One computation, numpy's,
    for a value however it is added (alone, with others, per column), so that it always lands in the same bin:
    DDSketch's own ``key`` takes ``math.log``, which puts a value on a bin's edge in the next bin now and then."""
    logs = np.log2(np.asarray(values, dtype=float))
    return (np.ceil(logs * _MAPPING._multiplier) + _MAPPING._offset).astype(np.int64)


def sketches_of_groups(groups: np.ndarray, values: np.ndarray, sums: np.ndarray) -> list[Sketch]:
    """The sketches of groups of values (``groups[i]`` the group of ``values[i]``), the bins of all groups counted at
    once, and each group's sum as given (added as its caller adds them: ``add_many`` adds a group's values in order,
    a merge its parts' sums in theirs; the last bits differ)."""
    values, size = _checked(values), len(sums)
    counts = np.bincount(groups, minlength=size)
    lows, highs = np.full(size, np.inf), np.full(size, -np.inf)
    np.minimum.at(lows, groups, values)
    np.maximum.at(highs, groups, values)
    positive = values > _MAPPING.min_possible
    owners = groups[positive]
    zeros = counts - np.bincount(owners, minlength=size)
    sketches = []
    for (offset, bins), count, zero, total, low, high in zip(
        _bins(owners, bin_keys(values[positive]), size),
        *(column.tolist() for column in (counts, zeros, sums, lows, highs)),
        strict=True,
    ):
        sketches.append(Sketch._of_bins(offset, bins, zero, total, low, high) if count else Sketch())
    return sketches


def _bins(groups: np.ndarray, keys: np.ndarray, size: int) -> list[tuple[int, list[float]]]:
    """Each group's bins (``groups[i]`` the group of ``keys[i]``): its lowest key and the counts of its keys from
    there to its highest; (0, []) for a group without keys."""
    if not len(keys):
        return [(0, [])] * size
    low = int(keys.min())
    span = int(keys.max()) - low + 1
    pairs = groups * span + (keys - low)  # one number per (group, key)
    found: list[tuple[int, list[float]]] = []
    if size * span <= 16 * len(keys) + 65_536:  # a table of every group's count of every key, counted in one pass
        for row in np.bincount(pairs, minlength=size * span).reshape(size, span).astype(float):
            held = np.flatnonzero(row)
            found.append((low + int(held[0]), row[held[0] : held[-1] + 1].tolist()) if len(held) else (0, []))
        return found
    # too large a table (many groups, keys far apart): only the pairs held, counted after sorting them
    pairs, counts = np.unique(pairs, return_counts=True)
    owners, keys = np.divmod(pairs, span)
    for start, end in pairwise(np.searchsorted(owners, np.arange(size + 1)).tolist()):
        if start == end:
            found.append((0, []))
            continue
        row = np.zeros(keys[end - 1] - keys[start] + 1)
        row[keys[start:end] - keys[start]] = counts[start:end]
        found.append((low + int(keys[start]), row.tolist()))
    return found
