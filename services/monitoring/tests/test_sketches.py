"""The percentile sketch: quantiles within its stated relative error of numpy's, exact merges and JSON round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmops_monitoring.sketches import RELATIVE_ACCURACY, Sketch

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
# DDSketch's guarantee, plus room for floating-point rounding at a bin's edge
TOLERANCE = RELATIVE_ACCURACY * (1 + 1e-9)


def sketch_of(values) -> Sketch:
    sketch = Sketch()
    for value in values:
        sketch.add(value)
    return sketch


def relative_error_at_rank(sketch: Sketch, values: np.ndarray, q: float) -> float:
    """How far the sketch's quantile is from the value of the rank it answers for: floor(q * (n - 1)) in sorted order,
    which is numpy's ``method="lower"``."""
    ordered = np.sort(values)
    rank = math.floor(q * (len(values) - 1))
    exact = np.quantile(values, q, method="lower")
    assert ordered[rank] == exact
    estimate = sketch.quantile(q)
    if exact == 0:
        assert estimate == 0.0
        return 0.0
    return abs(estimate - exact) / exact


@pytest.fixture
def latencies() -> np.ndarray:
    return np.random.default_rng(7).lognormal(mean=np.log(800), sigma=0.9, size=20_000)


class TestQuantiles:
    def test_every_quantile_is_within_one_percent_of_the_value_at_its_rank(self, latencies):
        sketch = sketch_of(latencies)

        worst = max(relative_error_at_rank(sketch, latencies, q) for q in QUANTILES)

        print(f"\nsketch of {len(latencies)} lognormal values: worst relative error {worst:.5f}")
        assert worst <= TOLERANCE

    def test_zeros_are_counted_exactly_and_answered_as_zero(self):
        values = np.concatenate([np.zeros(300), np.random.default_rng(1).lognormal(3, 1, size=700)])
        sketch = sketch_of(values)

        assert sketch.quantile(0.1) == 0.0
        assert isinstance(sketch.quantile(0.1), float)
        assert sketch.to_json()["z"] == 300
        assert max(relative_error_at_rank(sketch, values, q) for q in QUANTILES) <= TOLERANCE

    def test_an_empty_sketch_has_no_quantile_and_no_mean(self):
        sketch = Sketch()

        assert sketch.count == 0
        assert sketch.quantile(0.5) is None
        assert sketch.mean is None

    def test_the_mean_sum_min_and_max_are_exact(self, latencies):
        sketch = sketch_of(latencies)

        assert sketch.count == len(latencies)
        assert sketch.sum == pytest.approx(latencies.sum(), rel=1e-12)
        assert sketch.mean == pytest.approx(latencies.mean(), rel=1e-12)
        assert (sketch.min, sketch.max) == (latencies.min(), latencies.max())

    @pytest.mark.parametrize("value", [-1.0, float("nan")])
    def test_a_negative_or_missing_value_is_refused(self, value):
        with pytest.raises(ValueError):
            Sketch().add(value)

    @pytest.mark.parametrize("q", [-0.1, 1.5])
    def test_a_quantile_outside_zero_to_one_is_refused(self, q):
        with pytest.raises(ValueError):
            sketch_of([1.0]).quantile(q)


class TestMerge:
    def test_merged_sketches_answer_as_one_sketch_of_all_values(self, latencies):
        parts = np.array_split(latencies, 7)
        merged = Sketch()
        for part in parts:
            merged.merge(sketch_of(part))
        whole = sketch_of(latencies)

        assert _bins(merged) == _bins(whole)
        assert [merged.quantile(q) for q in QUANTILES] == [whole.quantile(q) for q in QUANTILES]
        assert max(relative_error_at_rank(merged, latencies, q) for q in QUANTILES) <= TOLERANCE

    def test_merge_is_associative_and_commutative(self):
        rng = np.random.default_rng(3)
        a, b, c = (sketch_of(rng.lognormal(mu, 1.0, size=2_000)) for mu in (2, 5, 8))
        c.add(0.0)

        left = _merged(_merged(a, b), c)
        right = _merged(a, _merged(b, c))
        backwards = _merged(_merged(c, b), a)

        assert _bins(left) == _bins(right) == _bins(backwards)
        answers = [[s.quantile(q) for q in QUANTILES] for s in (left, right, backwards)]
        assert answers[0] == answers[1] == answers[2]
        assert left.sum == pytest.approx(right.sum, rel=1e-12)

    def test_merging_leaves_the_other_sketch_as_it_was(self):
        mine, theirs = sketch_of([1.0, 2.0]), sketch_of([3.0, 0.0])
        before = theirs.to_json()

        mine.merge(theirs)

        assert theirs.to_json() == before
        assert (mine.count, mine.min, mine.max) == (4, 0.0, 3.0)

    def test_merging_into_or_with_an_empty_sketch_changes_nothing(self):
        full = sketch_of([5.0, 50.0])

        empty = Sketch()
        empty.merge(full)
        full.merge(Sketch())

        assert empty == full


class TestJson:
    def test_the_round_trip_through_json_text_is_exact(self, latencies):
        sketch = sketch_of(np.concatenate([latencies, np.zeros(5)]))

        data = json.loads(json.dumps(sketch.to_json()))
        again = Sketch.from_json(data)

        assert again.to_json() == sketch.to_json()
        assert [again.quantile(q) for q in QUANTILES] == [sketch.quantile(q) for q in QUANTILES]
        assert (again.count, again.sum, again.min, again.max) == (sketch.count, sketch.sum, sketch.min, sketch.max)

    def test_an_empty_sketch_round_trips(self):
        data = json.loads(json.dumps(Sketch().to_json()))

        assert data == {"k": [], "n": [], "z": 0, "c": 0, "s": 0.0, "min": None, "max": None}
        assert Sketch.from_json(data).count == 0

    def test_only_the_bins_that_hold_values_are_kept(self):
        sketch = sketch_of([1.0, 1_000_000.0])

        assert len(sketch.to_json()["k"]) == 2

    def test_a_day_of_latencies_stays_small(self, latencies):
        text = json.dumps(sketch_of(latencies).to_json())

        print(f"\n{len(latencies)} values: {len(text)} bytes of JSON")
        assert len(text) < 6_000

    def test_a_sketch_whose_bins_disagree_with_its_count_is_refused(self):
        data = sketch_of([1.0, 2.0]).to_json()

        with pytest.raises(ValueError):
            Sketch.from_json({**data, "c": 3})


def _merged(*sketches: Sketch) -> Sketch:
    total = Sketch()
    for sketch in sketches:
        total.merge(sketch)
    return total


def _bins(sketch: Sketch) -> tuple:
    data = sketch.to_json()
    return data["k"], data["n"], data["z"], data["c"], data["min"], data["max"]
