"""Uncertainty of per-example scores: bootstrap intervals of a mean, paired comparisons of two runs, what changed most.

Every function is seeded and deterministic: the same values and ``seed`` give the same result. Missing values
(``None``, NaN, and infinities, which have no mean) are left out and counted. Resampling is vectorised and done in
chunks of at most :data:`CHUNK_CELLS` drawn indices, so 10,000 examples with 2,000 resamples stay near 50 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: How many resample cells (resamples x examples) one chunk draws: 2M indices of 8 bytes and their values.
CHUNK_CELLS = 2_000_000

Values = Sequence[float | int | None] | np.ndarray


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean with its bootstrap percentile interval, over ``n`` values (``None`` values when ``n`` is 0)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True, slots=True)
class Comparison:
    """A candidate run against a baseline run on the same examples, paired by position.

    ``mean_difference`` is candidate minus baseline over the ``n`` pairs with both values; ``low``/``high`` its
    paired bootstrap percentile interval; ``p_value`` the two-sided sign-flip permutation test of a mean difference
    of 0. ``wins``/``ties``/``losses`` count the pairs where the candidate is higher / equal within the tolerance /
    lower; ``dropped`` the pairs left out because a value was missing on either side.
    """

    n: int
    mean_baseline: float | None
    mean_candidate: float | None
    mean_difference: float | None
    low: float | None
    high: float | None
    p_value: float | None
    wins: int
    ties: int
    losses: int
    dropped: int


def _as_array(values: Values) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(float, copy=False).ravel()
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _check(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")


def _chunks(resamples: int, n: int):
    """Row counts of the chunks that together make ``resamples`` rows of ``n`` cells."""
    rows = max(1, CHUNK_CELLS // max(n, 1))
    for start in range(0, resamples, rows):
        yield min(rows, resamples - start)


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The means of ``resamples`` resamples (with replacement) of ``values``; indices drawn row after row."""
    n = len(values)
    means = [values[rng.integers(0, n, size=(rows, n))].mean(axis=1) for rows in _chunks(resamples, n)]
    return np.concatenate(means)


def _percentile_interval(values: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    if len(values) == 1:
        return float(values[0]), float(values[0])
    means = _bootstrap_means(values, resamples, np.random.default_rng(seed))
    alpha = 1 - confidence
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_ci(values: Values, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """The mean of ``values`` and its percentile bootstrap interval (``resamples`` resamples, seeded).

    Missing values (``None``, NaN, infinite) are left out; ``n`` counts the values used. With no value the mean and
    bounds are ``None``; with one, both bounds are that value.
    """
    _check(confidence, resamples)
    array = _as_array(values)
    array = array[np.isfinite(array)]
    if len(array) == 0:
        return Interval(None, None, None, 0)
    low, high = _percentile_interval(array, confidence, resamples, seed)
    return Interval(float(array.mean()), low, high, len(array))


def _sign_flip_p_value(differences: np.ndarray, resamples: int, seed: int) -> float:
    """Two-sided sign-flip permutation test of a mean difference of 0: under the null hypothesis each difference is
    as likely to have the other sign, so the share of random sign flips whose mean is at least as far from 0 as the
    observed one estimates the p-value; (count + 1) / (resamples + 1) keeps it in (0, 1]."""
    n = len(differences)
    observed = abs(differences.mean())
    # float sums of the same magnitudes in another order differ in the last bits: count those as "as extreme"
    slack = 1e-12 * max(float(np.abs(differences).max()), 1.0)
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the interval's draws do not shift it
    count = 0
    for rows in _chunks(resamples, n):
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(rows, n))
        count += int(np.count_nonzero(np.abs(signs @ differences) / n >= observed - slack))
    return (count + 1) / (resamples + 1)


def paired_comparison(
    baseline: Values,
    candidate: Values,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    tie_tolerance: float = 1e-9,
) -> Comparison:
    """Compare ``candidate`` with ``baseline``, example by example (paired by position; the same length required).

    Pairs with a missing value on either side are dropped (``dropped``). The interval of the mean difference is the
    paired bootstrap's (the same as :func:`bootstrap_ci` of the differences with this ``seed``); the p-value is a
    two-sided sign-flip permutation test with its own seeded stream. Raises ValueError on different lengths.
    """
    _check(confidence, resamples)
    base, cand = _as_array(baseline), _as_array(candidate)
    if len(base) != len(cand):
        raise ValueError(f"baseline has {len(base)} values and candidate {len(cand)}: they must be paired")
    kept = np.isfinite(base) & np.isfinite(cand)
    base, cand = base[kept], cand[kept]
    dropped = int(len(kept) - kept.sum())
    n = len(base)
    if n == 0:
        return Comparison(0, None, None, None, None, None, None, 0, 0, 0, dropped)
    differences = cand - base
    low, high = _percentile_interval(differences, confidence, resamples, seed)
    wins = int(np.count_nonzero(differences > tie_tolerance))
    losses = int(np.count_nonzero(differences < -tie_tolerance))
    return Comparison(
        n=n,
        mean_baseline=float(base.mean()),
        mean_candidate=float(cand.mean()),
        mean_difference=float(differences.mean()),
        low=low,
        high=high,
        p_value=_sign_flip_p_value(differences, resamples, seed),
        wins=wins,
        ties=n - wins - losses,
        losses=losses,
        dropped=dropped,
    )


def most_changed(
    baseline: Values, candidate: Values, ids: Sequence[Any] | None = None, *, limit: int = 10
) -> list[dict[str, Any]]:
    """The ``limit`` examples whose value changed most (largest absolute candidate - baseline), largest first.

    Each is ``{"index", "id", "baseline", "candidate", "difference"}`` (``id`` from ``ids``, else ``None``); pairs
    with a missing value are skipped; equal changes keep example order.
    """
    base, cand = _as_array(baseline), _as_array(candidate)
    if len(base) != len(cand) or (ids is not None and len(ids) != len(base)):
        raise ValueError("baseline, candidate and ids must have one entry per example")
    if limit < 1:
        return []
    differences = cand - base
    present = np.flatnonzero(np.isfinite(differences))
    order = present[np.argsort(-np.abs(differences[present]), kind="stable")][:limit]
    return [
        {
            "index": int(i),
            "id": None if ids is None else ids[i],
            "baseline": float(base[i]),
            "candidate": float(cand[i]),
            "difference": float(differences[i]),
        }
        for i in order
    ]
