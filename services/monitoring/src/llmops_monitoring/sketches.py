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
        self._sketch = _empty(zero_count=0.0)
        self.sum = 0.0
        self.min: float | None = None
        self.max: float | None = None

    @property
    def count(self) -> int:
        return int(self._sketch.count)

    def add(self, value: float) -> None:
        value = float(value)
        if not value >= 0:  # also refuses NaN
            raise ValueError(f"a sketch takes values >= 0, got {value!r}")
        self._sketch.add(value)
        self.sum += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def add_many(self, values: Sequence[float]) -> None:
        """Add many values at once: their bin keys computed together (numpy), each bin added once with its count.
        A value on a bin's very edge may land in the bin beside the one :meth:`add` picks (the two compute the
        logarithm differently); both are within the relative accuracy."""
        if len(values) < 32:  # numpy's call costs more than a few additions
            for value in values:
                self.add(value)
            return
        array = np.asarray(values, dtype=float)
        if not (array >= 0).all():  # also refuses NaN
            raise ValueError(f"a sketch takes values >= 0, got {array[~(array >= 0)][0]!r}")
        sketch = self._sketch
        mapping = sketch._mapping
        positive = array[array > mapping.min_possible]
        if len(positive):
            keys = np.ceil(np.log2(positive) * mapping._multiplier) + mapping._offset
            for key, count in zip(*np.unique(keys.astype(np.int64), return_counts=True), strict=True):
                sketch._store.add(int(key), float(count))
        sketch._zero_count += float(len(array) - len(positive))
        total, low, high = float(array.sum()), float(array.min()), float(array.max())
        sketch._count += float(len(array))
        sketch._sum += total
        sketch._min, sketch._max = min(sketch._min, low), max(sketch._max, high)
        self.sum += total
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)

    def merge(self, other: Sketch) -> None:
        """Add ``other``'s values to this sketch (``other`` is left as it was)."""
        if other.count == 0:
            return
        self._sketch.merge(other._sketch)
        self.sum += other.sum
        self.min = other.min if self.min is None else min(self.min, other.min)  # type: ignore[type-var]
        self.max = other.max if self.max is None else max(self.max, other.max)  # type: ignore[type-var]

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1) within ``RELATIVE_ACCURACY``; None when the sketch is empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"a quantile is between 0 and 1, got {q!r}")
        value = self._sketch.get_quantile_value(q)
        return None if value is None else float(value)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def copy(self) -> Sketch:
        return Sketch.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The sketch as a compact JSON object: only the bins that hold values (keys ascending, with their counts)."""
        # DDSketch has no public accessor for its bins or zero count: its store's bins are read as its merge reads them
        store = self._sketch._store
        offset = store.offset
        held = [(index + offset, int(count)) for index, count in enumerate(store.bins) if count]
        keys = [key for key, _ in held]
        counts = [count for _, count in held]
        return {
            "k": keys,
            "n": counts,
            "z": int(self._sketch._zero_count),
            "c": self.count,
            "s": self.sum,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sketch:
        if len(data["k"]) != len(data["n"]):
            raise ValueError("a sketch's bin keys and counts differ in length")
        sketch = cls.__new__(cls)  # not cls(): its empty DDSketch would be replaced at once
        store = DenseStore()
        keys = data["k"]
        if keys:  # the store's bins set whole (adding key by key grows and shifts them at every step)
            low, high = int(keys[0]), int(keys[-1])
            if any(b <= a for a, b in pairwise(keys)):
                raise ValueError("a sketch's bin keys are not ascending")
            bins = [0.0] * (high - low + 1)
            for key, count in zip(keys, data["n"], strict=True):
                bins[int(key) - low] = float(count)
            store.bins, store.offset, store.min_key, store.max_key = bins, low, low, high
            store.count = float(sum(data["n"]))
        sketch._sketch = _empty(zero_count=float(data["z"]), store=store)
        if sketch.count != data["c"]:
            raise ValueError(f"a sketch's bins hold {sketch.count} values, its count says {data['c']}")
        sketch.sum = float(data["s"])
        sketch.min = None if data["min"] is None else float(data["min"])
        sketch.max = None if data["max"] is None else float(data["max"])
        return sketch

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
