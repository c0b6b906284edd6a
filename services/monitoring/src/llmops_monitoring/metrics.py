"""Inference metrics in time buckets: per minute, rolled up to hours, per project, route, deployment, model version
and user.

A bucket holds counts and sums, which add, and percentile sketches, which merge; so any set of buckets (a day of
minutes, every deployment of a route) summarises exactly as if its records had been counted together, quantiles
within the sketches' stated error. Pure: records in, buckets out; storing them is the caller's. A batch given as one
Arrow table is counted column by column (``metric_columns.aggregate_table``), to the same buckets as its records one
by one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from llmops_monitoring.sketches import Sketch

Resolution = Literal["minute", "hour"]
RESOLUTIONS: tuple[Resolution, ...] = ("minute", "hour")

#: What an alert rule may watch in a summary. Besides these, ``errors.<kind>`` (``errors.http_502``) and
#: ``flags.<kind>`` (``flags.repetition``) name the count of one error or anomaly kind.
METRIC_NAMES: tuple[str, ...] = (
    "requests",
    "errors",
    "error_rate",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "latency_mean",
    "ttft_p50",
    "ttft_p95",
    "ttft_p99",
    "tokens_in",
    "tokens_out",
    "tokens_per_second",
    "cost",
    "feedback_mean",
)
METRIC_PREFIXES: tuple[str, ...] = ("errors.", "flags.")

_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True, slots=True)
class BucketKey:
    """Which bucket: its resolution, its start (UTC, truncated to the resolution) and its dimensions ("" for none)."""

    resolution: Resolution
    start: datetime
    project: str = ""
    route: str = ""
    deployment_id: str = ""
    model_version_id: str = ""
    user: str = ""

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"a bucket's resolution is one of {RESOLUTIONS}, got {self.resolution!r}")
        object.__setattr__(self, "start", truncate(self.start, self.resolution))
        for name in ("project", "route", "deployment_id", "model_version_id", "user"):
            object.__setattr__(self, name, getattr(self, name) or "")

    @classmethod
    def of(cls, record: Mapping[str, Any], resolution: Resolution = "minute") -> BucketKey:
        """The bucket of one inference record."""
        return cls(
            resolution=resolution,
            start=record["time"],
            project=record.get("project"),
            route=record.get("route"),
            deployment_id=record.get("deployment_id"),
            model_version_id=record.get("model_version_id"),
            user=record.get("user"),
        )

    @classmethod
    def _unchecked(cls, *values: Any) -> BucketKey:
        """A key of values already as a key keeps them (a start truncated in UTC, "" for no dimension), made without
        ``__post_init__``: a batch's keys are made by the hundred."""
        key = object.__new__(cls)
        for set_slot, value in zip(_KEY_SLOTS, values, strict=True):
            set_slot(key, value)
        return key

    def at(self, resolution: Resolution) -> BucketKey:
        """The same dimensions in the bucket of another resolution that holds this one's start."""
        return BucketKey(
            resolution, self.start, self.project, self.route, self.deployment_id, self.model_version_id, self.user
        )

    def to_row(self) -> dict[str, Any]:
        """The key's columns (``start`` stays a datetime: a timestamptz column)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BucketKey:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


#: A key's slots in field order, set past the frozen __setattr__ as its __init__ sets them
_KEY_SLOTS = tuple(getattr(BucketKey, f.name).__set__ for f in fields(BucketKey))


def truncate(moment: datetime, resolution: Resolution) -> datetime:
    """The start of the minute or hour that holds ``moment``, in UTC (a naive moment is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    moment = moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0) if resolution == "hour" else moment


_SKETCHES = ("latency", "ttft", "input_chars", "output_chars", "output_tokens_dist")
_COUNTERS = ("errors_by_kind", "flags")


@dataclass(slots=True)
class Bucket:
    """The metrics of one bucket's records. ``output_tokens_seconds`` is the time spent by the completed records that
    produced tokens, and ``output_tokens`` their tokens, so that tokens/s is ``output_tokens / output_tokens_seconds``
    (a failed record's partial tokens and its time are left out of that speed, not of ``tokens_out``)."""

    requests: int = 0
    errors: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    latency: Sketch = field(default_factory=Sketch)
    ttft: Sketch = field(default_factory=Sketch)
    tokens_in: int = 0
    tokens_out: int = 0
    output_tokens: int = 0
    output_tokens_seconds: float = 0.0
    cost: float = 0.0
    feedback_count: int = 0
    feedback_sum: float = 0.0
    flags: dict[str, int] = field(default_factory=dict)
    input_chars: Sketch = field(default_factory=Sketch)
    output_chars: Sketch = field(default_factory=Sketch)
    #: tokens out of the completed records that produced some (the outlier reference of ``tokens_out``)
    output_tokens_dist: Sketch = field(default_factory=Sketch)

    def add_all(self, records: Sequence[Mapping[str, Any]], *, sketches: bool = True) -> None:
        """Count many inference records: as :meth:`add` each, with each sketch's values added together (or, without
        ``sketches``, their counters only)."""
        values: dict[str, list[float]] = {name: [] for name in _SKETCHES}
        for record in records:
            self._count(record, values)
        if sketches:
            for name, found in values.items():
                getattr(self, name).add_many(found)

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one inference record."""
        values: dict[str, list[float]] = {name: [] for name in _SKETCHES}
        self._count(record, values)
        for name, found in values.items():
            for value in found:
                getattr(self, name).add(value)

    def _count(self, record: Mapping[str, Any], values: dict[str, list[float]]) -> None:
        """Count one record's counters, and gather its sketches' values in ``values``."""
        self.requests += 1
        if record["outcome"] == "failed":
            self.errors += 1
            kind = error_kind(record.get("status"))
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        if record.get("latency_ms") is not None:
            values["latency"].append(record["latency_ms"])
        if record.get("time_to_first_token_ms") is not None:
            values["ttft"].append(record["time_to_first_token_ms"])
        tokens_out = record.get("tokens_out") or 0
        self.tokens_in += record.get("tokens_in") or 0
        self.tokens_out += tokens_out
        if record["outcome"] == "completed" and tokens_out > 0 and record.get("latency_ms") is not None:
            self.output_tokens += tokens_out
            self.output_tokens_seconds += record["latency_ms"] / 1000
        if record["outcome"] == "completed" and tokens_out > 0:
            values["output_tokens_dist"].append(tokens_out)
        self.cost += record.get("cost") or 0.0
        for flag in record.get("flags") or ():
            self.flags[flag] = self.flags.get(flag, 0) + 1
        if record.get("input") is not None:
            values["input_chars"].append(len(record["input"]))
        if record.get("output") is not None:
            values["output_chars"].append(len(record["output"]))

    def add_feedback(self, rating: int) -> None:
        if isinstance(rating, bool) or not 1 <= rating <= 5:
            raise ValueError(f"a feedback rating is 1 to 5, got {rating!r}")
        self.feedback_count += 1
        self.feedback_sum += rating

    def merge(self, other: Bucket) -> None:
        """Add ``other``'s metrics to this bucket's (``other`` is left as it was)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in _SKETCHES:
                mine.merge(theirs)
            elif f.name in _COUNTERS:
                setattr(self, f.name, dict(Counter(mine) + Counter(theirs)))
            else:
                setattr(self, f.name, mine + theirs)

    def copy(self) -> Bucket:
        return Bucket.from_row(self.to_row())

    def to_row(self) -> dict[str, Any]:
        """The bucket's columns, JSON-ready: sketches as their JSON objects, kind counts as objects."""
        row: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SKETCHES:
                row[f.name] = value.to_json()
            elif f.name in _COUNTERS:
                row[f.name] = dict(sorted(value.items()))
            else:
                row[f.name] = value
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Bucket:
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = row[f.name]
            if f.name in _SKETCHES:
                values[f.name] = Sketch.from_json(value)
            elif f.name in _COUNTERS:
                values[f.name] = {str(kind): int(count) for kind, count in value.items()}
            else:
                values[f.name] = value
        return cls(**values)


def error_kind(status: int | None) -> str:
    """The kind of a failed record's error: ``http_<status>`` (``http_502``), ``http_unknown`` without a status."""
    return f"http_{status}" if status is not None else "http_unknown"


def aggregate(
    records: Iterable[Mapping[str, Any]], resolution: Resolution = "minute", *, by_user: bool = False
) -> dict[BucketKey, Bucket]:
    """The buckets of some inference records. A shadow record counts under its own deployment, like any other: it is
    real traffic of that deployment (its answer was only not returned).

    Every record is counted once in the buckets of all users (``user`` ""), with every metric; ``by_user`` gives the
    per-user buckets instead, which hold the counts, tokens, cost, errors, flags and feedback of each user's records
    but no percentile sketches (a sketch per user and minute would cost more than all the rest of the ingest). A
    query reads one kind or the other, never both (``metrics_store``)."""
    grouped: dict[tuple, list[Mapping[str, Any]]] = {}
    for record in records:
        user = record.get("user") or ""
        if by_user and not user:
            continue
        # a plain tuple per record (a BucketKey per group): the key's start is truncated once more when it is made
        key = (
            _truncated(record["time"], resolution),
            record.get("project") or "",
            record.get("route") or "",
            record.get("deployment_id") or "",
            record.get("model_version_id") or "",
            user if by_user else "",
        )
        grouped.setdefault(key, []).append(record)
    buckets: dict[BucketKey, Bucket] = {}
    for values, members in grouped.items():
        bucket = buckets[BucketKey(resolution, *values)] = Bucket()
        bucket.add_all(members, sketches=not by_user)
    return buckets


def _truncated(moment: datetime, resolution: Resolution) -> datetime:
    if moment.tzinfo is not UTC:
        return truncate(moment, resolution)
    return (
        moment.replace(minute=0, second=0, microsecond=0)
        if resolution == "hour"
        else moment.replace(second=0, microsecond=0)
    )


def rollup(buckets: Mapping[BucketKey, Bucket], resolution: Resolution = "hour") -> dict[BucketKey, Bucket]:
    """The buckets of a coarser resolution that hold the given ones (which are left as they were)."""
    rolled: dict[BucketKey, Bucket] = {}
    for key, bucket in buckets.items():
        if key.resolution == "hour" and resolution == "minute":
            raise ValueError("an hour's bucket cannot be split into minutes")
        coarse = key.at(resolution)
        if coarse not in rolled:
            rolled[coarse] = Bucket()
        rolled[coarse].merge(bucket)
    return rolled


def add_feedback(buckets: dict[BucketKey, Bucket], key: BucketKey, rating: int) -> None:
    """Count one feedback rating (1 to 5) in the bucket of ``key``, made if the bucket has no records yet."""
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = Bucket()
    bucket.add_feedback(rating)


def merged(buckets: Iterable[Bucket]) -> Bucket:
    """One bucket holding all of ``buckets``."""
    total = Bucket()
    for bucket in buckets:
        total.merge(bucket)
    return total


def summarise(buckets: Iterable[Bucket]) -> dict[str, Any]:
    """One view of some buckets merged: what the API returns per group, and what alert rules read."""
    total = merged(buckets)
    latency = {name: total.latency.quantile(q) for name, q in _QUANTILES.items()}
    latency.update(mean=total.latency.mean, count=total.latency.count, sum=total.latency.sum)
    ttft = {name: total.ttft.quantile(q) for name, q in _QUANTILES.items()}
    ttft.update(mean=total.ttft.mean, count=total.ttft.count, sum=total.ttft.sum)
    return {
        "requests": total.requests,
        "errors": total.errors,
        "error_rate": total.errors / total.requests if total.requests else None,
        "errors_by_kind": dict(sorted(total.errors_by_kind.items())),
        "latency_ms": latency,
        "ttft_ms": ttft,
        "tokens_in": total.tokens_in,
        "tokens_out": total.tokens_out,
        "tokens_per_second": (
            total.output_tokens / total.output_tokens_seconds if total.output_tokens_seconds > 0 else None
        ),
        "cost": total.cost,
        "feedback_count": total.feedback_count,
        "feedback_mean": total.feedback_sum / total.feedback_count if total.feedback_count else None,
        "flags": dict(sorted(total.flags.items())),
    }


def is_metric_name(name: str) -> bool:
    """Whether an alert rule may watch ``name``."""
    return name in METRIC_NAMES or any(name.startswith(p) and len(name) > len(p) for p in METRIC_PREFIXES)


def metric_value(summary: Mapping[str, Any], name: str) -> float | None:
    """The value of one metric in a summary; None when there is none to tell (no requests, no feedback)."""
    if not is_metric_name(name):
        raise ValueError(f"unknown metric {name!r}")
    prefix, _, rest = name.partition(".")
    if rest and prefix == "errors":
        return float(summary["errors_by_kind"].get(rest, 0))
    if rest and prefix == "flags":
        return float(summary["flags"].get(rest, 0))
    sketch, _, quantile = name.partition("_")
    if sketch in ("latency", "ttft") and quantile in (*_QUANTILES, "mean"):
        value = summary[f"{sketch}_ms"][quantile]
    else:
        value = summary[name]
    return None if value is None else float(value)
