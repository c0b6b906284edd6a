"""Outlier fences: a deployment's reference window of lengths, latencies and token counts as robust statistics on
the log scale (median and MAD, or quartiles from the metrics' sketches), and the values outside them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmops_monitoring.anomaly_settings import AnomalySettings

# A normal distribution's standard deviation is 1.4826 MADs, and 1 / 1.349 interquartile ranges.
_MAD_SIGMA, _IQR_SIGMA = 1.4826, 1 / 1.349


@dataclass(frozen=True)
class Fence:
    """Values outside ``[low, high]`` are outliers (``low`` ``None``: no lower fence). Built on ``log1p`` of the
    values, where latencies, lengths and token counts (positive, skewed right) are near symmetric: the fences are
    ratios of the median, so a fence suits a 50 ms and a 50 s deployment alike."""

    low: float | None
    high: float

    @classmethod
    def around(cls, center: float, scale: float, k: float, *, lower: bool, min_scale: float) -> Fence:
        """The fence ``center ± k * scale`` (log scale, ``scale`` at least ``min_scale``), back on the value scale."""
        spread = k * max(scale, min_scale)
        return cls(max(0.0, math.expm1(center - spread)) if lower else None, math.expm1(center + spread))

    def outside(self, value: float) -> bool:
        return value > self.high or (self.low is not None and value < self.low)


@dataclass(frozen=True)
class Reference:
    """The fences of one deployment's reference window for the three outlier measures; ``None``: too few values.

    The service should build it with :meth:`from_quantiles` (p25/p50/p75 of the reference window, from the metrics'
    mergeable sketches): no raw values to keep, and its fences
    match :meth:`from_values` on the same data (both estimate the log-scale standard deviation robustly: IQR / 1.349
    and 1.4826 MAD). ``from_values`` is for raw values at hand (tests, a small window)."""

    length: Fence | None = None
    latency: Fence | None = None
    tokens: Fence | None = None

    @classmethod
    def from_values(
        cls,
        *,
        length: Iterable[float] = (),
        latency_ms: Iterable[float] = (),
        tokens_out: Iterable[float] = (),
        settings: AnomalySettings | None = None,
    ) -> Reference:
        """Median and MAD of ``log1p`` of each measure's values."""
        settings = settings or AnomalySettings()

        def fence(values: Iterable[float], lower: bool) -> Fence | None:
            logs = [math.log1p(v) for v in values if v is not None and v >= 0]
            if len(logs) < settings.reference_min_values:
                return None
            center = statistics.median(logs)
            mad = statistics.median(abs(v - center) for v in logs)
            return Fence.around(
                center, _MAD_SIGMA * mad, settings.outlier_k, lower=lower, min_scale=settings.outlier_min_scale
            )

        return cls(fence(length, True), fence(latency_ms, False), fence(tokens_out, True))

    @classmethod
    def from_quantiles(
        cls,
        *,
        length: Sequence[float] | None = None,
        latency_ms: Sequence[float] | None = None,
        tokens_out: Sequence[float] | None = None,
        counts: Mapping[str, int] | None = None,
        settings: AnomalySettings | None = None,
    ) -> Reference:
        """Each measure's ``(p25, p50, p75)``; ``counts`` (by ``length``/``latency_ms``/``tokens_out``), when
        given, drops the measures with fewer than ``reference_min_values`` values behind them."""
        settings = settings or AnomalySettings()

        def fence(name: str, quartiles: Sequence[float] | None, lower: bool) -> Fence | None:
            if quartiles is None or (counts is not None and counts.get(name, 0) < settings.reference_min_values):
                return None
            q1, q2, q3 = (math.log1p(max(0.0, q)) for q in quartiles)
            if not q1 <= q2 <= q3:
                raise ValueError(f"{name}: quartiles out of order: {quartiles}")
            return Fence.around(
                q2, _IQR_SIGMA * (q3 - q1), settings.outlier_k, lower=lower, min_scale=settings.outlier_min_scale
            )

        return cls(
            fence("length", length, True), fence("latency_ms", latency_ms, False), fence("tokens_out", tokens_out, True)
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], settings: AnomalySettings | None = None) -> Reference:
        """From a reference window's records (completed ones; lengths of known, non-empty outputs only)."""
        completed = [record for record in records if record.get("outcome") == "completed"]
        return cls.from_values(
            length=[len(text) for text in map(output_text, completed) if text],
            latency_ms=[record["latency_ms"] for record in completed],
            tokens_out=[record["tokens_out"] for record in completed if record.get("tokens_out")],
            settings=settings,
        )


def output_text(record: Mapping[str, Any]) -> str | None:
    """The output's text when the record carries it."""
    output = record.get("output")
    return output if isinstance(output, str) and record.get("text_mode") != "hashed" else None
