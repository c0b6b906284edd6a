"""The metric buckets of a whole batch at once (``metrics_store.buckets_of_table``): the records' columns grouped with
numpy and Arrow into the same minute and hour buckets, to the last bit, as :func:`llmops_monitoring.metrics.aggregate`
and :func:`~llmops_monitoring.metrics.rollup` make of the records one by one (``tests/test_buckets_table.py``); a
``Bucket`` is made per group, never per record."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmops_monitoring.metrics import Bucket, BucketKey, error_kind
from llmops_monitoring.sketches import Sketch, sketches_of_groups


def aggregate_table(table: pa.Table) -> dict[BucketKey, Bucket]:
    """The minute and hour buckets, of all users and per user, of records given as one Arrow table (the columns of
    ``records.SCHEMA``; no record without a time): the same as ``aggregate`` of its rows and ``rollup`` of their
    minutes give, to the last count, bin and float (each sum added in the order they add it), but counted column by
    column, and each bucket made once."""
    if not table.num_rows:
        return {}
    columns = _Columns(table)
    everyone = (np.zeros(table.num_rows, dtype=np.int64), [""])  # the buckets of all users are user ""
    buckets: dict[BucketKey, Bucket] = {}
    for by_user in (False, True):
        dimensions = [*columns.dimensions[:-1], columns.dimensions[-1] if by_user else everyone]
        codes = [code for code, _ in dimensions]
        minute_of, minute_first = _groups([columns.minute[0], *codes], columns.has_user if by_user else None)
        hour_of, hour_first = _groups([code[minute_first] for code in (columns.hour[0], *codes)])
        minute_sketches, hour_sketches = ({}, {}) if by_user else columns.sketches(minute_of, hour_of)
        minutes = columns.buckets(minute_of, len(minute_first), minute_sketches)
        row_hour = np.append(hour_of, len(hour_first))[minute_of]  # a row in no minute's group is in no hour's
        hours = columns.buckets(row_hour, len(hour_first), hour_sketches, parts=(hour_of, minutes))
        for resolution, starts, first, made in (
            ("minute", columns.minute, minute_first, minutes),
            ("hour", columns.hour, minute_first[hour_first], hours),
        ):
            values = [[names[code] for code in codes[first].tolist()] for codes, names in (starts, *dimensions)]
            buckets.update(
                zip((BucketKey._unchecked(resolution, *key) for key in zip(*values, strict=True)), made, strict=True)
            )
    return buckets


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BUCKET_FIELDS = tuple(f.name for f in fields(Bucket))
_MINUTE_US, _HOUR_US = 60_000_000, 3_600_000_000
_KEY_LIMIT = 2**62  # a group key's bound: past it, the keys are renumbered


class _Columns:
    """A batch's columns as ``Bucket._count`` reads each record, in numpy arrays (a null token count or cost is 0, a
    null latency or text no value); the bucket times and dimensions as codes with the value of each code."""

    def __init__(self, table: pa.Table) -> None:
        moments = table["time"].combine_chunks().cast(pa.timestamp("us", tz="UTC"))
        if moments.null_count:
            raise ValueError("every inference record has a time")
        micros = moments.cast(pa.int64()).to_numpy()
        self.minute, self.hour = _starts(micros, _MINUTE_US), _starts(micros, _HOUR_US)
        names = ("project", "route", "deployment_id", "model_version_id", "user")
        self.dimensions = [_codes(table[name]) for name in names]
        users, values = self.dimensions[-1]
        self.has_user = users != values.index("") if "" in values else np.ones(len(users), dtype=bool)
        self.failed = _numpy(pc.equal(table["outcome"], "failed"), False)
        completed = _numpy(pc.equal(table["outcome"], "completed"), False)
        has_latency, self.latency = _numpy(pc.is_valid(table["latency_ms"])), _numpy(table["latency_ms"], 0.0)
        self.tokens_in, self.tokens_out = _numpy(table["tokens_in"], 0), _numpy(table["tokens_out"], 0)
        self.cost = _numpy(table["cost"], 0.0)
        produced = completed & (self.tokens_out > 0)  # the completed records that produced tokens
        self.timed = produced & has_latency  # and of those, the ones whose time counts in tokens per second
        status = table["status"].combine_chunks().filter(pa.array(self.failed))
        kinds = pc.fill_null(pc.binary_join_element_wise("http_", pc.cast(status, pa.string()), ""), error_kind(None))
        flags = table["flags"].combine_chunks()
        self.kinds = {
            "errors_by_kind": (np.flatnonzero(self.failed), *_kind_codes(kinds)),
            "flags": (_numpy(pc.list_parent_indices(flags)), *_kind_codes(pc.list_flatten(flags))),
        }
        ttft = table["time_to_first_token_ms"]
        self.values = {
            "latency": (has_latency, self.latency),
            "ttft": (_numpy(pc.is_valid(ttft)), _numpy(ttft, 0.0)),
            "input_chars": (_numpy(pc.is_valid(table["input"])), _numpy(pc.utf8_length(table["input"]), 0)),
            "output_chars": (_numpy(pc.is_valid(table["output"])), _numpy(pc.utf8_length(table["output"]), 0)),
            "output_tokens_dist": (produced, self.tokens_out),
        }

    def sketches(
        self, minute_of: np.ndarray, hour_of: np.ndarray
    ) -> tuple[dict[str, list[Sketch]], dict[str, list[Sketch]]]:
        """The sketches of groups of rows by minute (``minute_of[i]`` the minute of row i, every row in one) and of
        the hours that hold them (``hour_of[m]`` the hour of minute m), counted together: a minute's sum is its
        values' in their order, an hour's its minutes' sums in theirs, as ``add_many`` and ``rollup`` add them."""
        minutes, hours = len(hour_of), int(hour_of.max()) + 1
        row_hour = minutes + hour_of[minute_of]  # the hours numbered after the minutes
        found: tuple[dict[str, list[Sketch]], dict[str, list[Sketch]]] = ({}, {})
        for name, (mask, values) in self.values.items():
            of, held = minute_of[mask], values[mask].astype(float)
            sums = _float_sums(of, held, minutes)
            sketches = sketches_of_groups(
                np.concatenate([of, row_hour[mask]]),
                np.concatenate([held, held]),
                np.concatenate([sums, _float_sums(hour_of, sums, hours)]),
            )
            found[0][name], found[1][name] = sketches[:minutes], sketches[minutes:]
        return found

    def buckets(
        self,
        of: np.ndarray,
        size: int,
        sketches: dict[str, list[Sketch]],
        parts: tuple[np.ndarray, list[Bucket]] | None = None,
    ) -> list[Bucket]:
        """The buckets of ``size`` groups of rows, ``of[i]`` the group of row i (``size`` for none), with the given
        sketches (empty ones for the others). With ``parts`` (each part's group, and the parts), a group's float sums
        are its parts' added in their order, as ``rollup`` merges them; its counts are its rows'."""
        total = size + 1  # the rows in no group are counted apart, and left out
        timed = self.timed
        counts = {
            "requests": np.bincount(of, minlength=total),
            "errors": np.bincount(of[self.failed], minlength=total),
            "tokens_in": _int_sums(of, self.tokens_in, total),
            "tokens_out": _int_sums(of, self.tokens_out, total),
            "output_tokens": _int_sums(of[timed], self.tokens_out[timed], total),
            "output_tokens_seconds": _float_sums(of[timed], self.latency[timed] / 1000, total),
            "cost": _float_sums(of, self.cost, total),
        }
        if parts is not None:
            part_of, made = parts
            for name in ("output_tokens_seconds", "cost"):
                counts[name] = _float_sums(part_of, [getattr(part, name) for part in made], total)
        found: dict[str, list[Any]] = {name: column[:size].tolist() for name, column in counts.items()}
        found |= {"feedback_count": [0] * size, "feedback_sum": [0.0] * size}
        for name, (rows, codes, labels) in self.kinds.items():
            found[name] = _kind_counts(of[rows], codes, labels, total)[:size]
        for name in self.values:
            found[name] = sketches[name] if name in sketches else [Sketch() for _ in range(size)]
        return [Bucket(*values) for values in zip(*(found[name] for name in _BUCKET_FIELDS), strict=True)]


def _groups(codes: list[np.ndarray], rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group (the rows alike in every code array are one), the groups numbered in the order of their first
    row, as a dict of the rows' keys would be; and each group's first row. Only ``rows`` (a mask) are grouped given
    them: the group of the others is the one past the last."""
    taken = np.arange(len(codes[0])) if rows is None else np.flatnonzero(rows)
    key, size = np.zeros(len(taken), dtype=np.int64), 1
    for code in codes:
        radix = int(code.max(initial=0)) + 1
        if size * radix > _KEY_LIMIT:  # renumbered densely, so that key * radix + code cannot overflow
            _, key = np.unique(key, return_inverse=True)
            size = int(key.max(initial=0)) + 1
        key, size = key * radix + code[taken], size * radix
    # hashed, not sorted; then numbered in the order of their first row (whatever order the hashing numbers them in)
    inverse = pc.dictionary_encode(pa.array(key)).indices.to_numpy()
    first = np.full(int(inverse.max(initial=-1)) + 1, len(taken))
    np.minimum.at(first, inverse, np.arange(len(taken)))
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    of = np.full(len(codes[0]), len(order))
    of[taken] = rank[inverse]
    return of, taken[first[order]]


def _starts(micros: np.ndarray, unit: int) -> tuple[np.ndarray, list[datetime]]:
    """Each row's bucket start as a code, and the start of each code (floored, as ``truncate`` floors)."""
    starts, codes = np.unique(micros - micros % unit, return_inverse=True)
    return codes, [_EPOCH + timedelta(microseconds=start) for start in starts.tolist()]


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Each row's value as a code, and the value of each code (a null is "", as in ``BucketKey``)."""
    encoded = pc.dictionary_encode(pc.fill_null(column, "").combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def _numpy(column: pa.Array | pa.ChunkedArray, null: Any = None) -> np.ndarray:
    if null is not None:
        column = pc.fill_null(column, null)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.to_numpy(zero_copy_only=False)


def _int_sums(of: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    sums = np.zeros(size, dtype=np.int64)
    np.add.at(sums, of, values)  # exact, where np.bincount's weights go through floats
    return sums


def _float_sums(of: np.ndarray, values: Any, size: int) -> np.ndarray:
    # np.bincount adds each group's values in their order, from 0.0, as Bucket._count and Bucket.merge add them (and
    # gives ints for no values)
    return np.bincount(of, values, minlength=size).astype(float)


def _kind_codes(kinds: pa.Array) -> tuple[np.ndarray, list[str | None]]:
    """Each kind as a code, and the kind of each code (a null kind is None, as iterating a record's list gives it)."""
    encoded = pc.dictionary_encode(kinds, null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def _kind_counts(groups: np.ndarray, codes: np.ndarray, labels: list[Any], size: int) -> list[dict[str, int]]:
    """How many of each kind each group holds (``groups[i]`` the group of a kind of code ``codes[i]``)."""
    counted: list[dict[str, int]] = [{} for _ in range(size)]
    pairs, counts = np.unique(groups * len(labels) + codes, return_counts=True)
    for pair, count in zip(pairs.tolist(), counts.tolist(), strict=True):
        group, code = divmod(pair, len(labels))
        counted[group][labels[code]] = count
    return counted
