"""Bootstrap intervals, paired comparisons and most-changed examples (llmops.scoring.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.scoring import stats
from llmops.scoring.stats import Interval, bootstrap_ci, most_changed, paired_comparison


def normal(n: int, mean: float = 0.0, sd: float = 1.0, seed: int = 1) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, sd, n))


class TestBootstrapInterval:
    def test_the_mean_lies_inside_its_interval_and_the_interval_narrows_with_more_data(self):
        small, large = bootstrap_ci(normal(50, 10)), bootstrap_ci(normal(5000, 10))
        for interval in (small, large):
            assert interval.low < interval.mean < interval.high
        assert large.high - large.low < small.high - small.low

    def test_the_interval_covers_the_true_mean_in_about_95_of_100_samples(self):
        covered = sum(
            (i := bootstrap_ci(normal(100, 3.0, seed=s), resamples=500)).low <= 3.0 <= i.high for s in range(100)
        )
        assert 88 <= covered <= 100

    def test_the_same_seed_gives_the_same_interval_and_another_seed_another(self):
        values = normal(200)
        assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
        assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)

    def test_missing_values_are_left_out(self):
        assert bootstrap_ci([1.0, None, math.nan, 3.0], seed=3) == bootstrap_ci([1.0, 3.0], seed=3)
        assert bootstrap_ci([1.0, None, math.nan, 3.0]).n == 2

    def test_no_value_has_no_mean_and_one_value_is_its_own_interval(self):
        assert bootstrap_ci([None, math.nan]) == Interval(None, None, None, 0)
        assert bootstrap_ci([0.25]) == Interval(0.25, 0.25, 0.25, 1)

    def test_it_equals_a_plain_loop_over_resamples(self):
        values = np.array([0.1, 0.9, 0.4, 0.4, 0.7, 0.2, 1.0])
        rng = np.random.default_rng(11)
        means = [values[rng.integers(0, len(values), size=len(values))].mean() for _ in range(300)]
        low, high = np.percentile(means, [5, 95])
        assert bootstrap_ci(values, confidence=0.9, resamples=300, seed=11) == Interval(values.mean(), low, high, 7)

    def test_chunking_does_not_change_the_result(self, monkeypatch):
        values = normal(100)
        whole = bootstrap_ci(values, resamples=300)
        monkeypatch.setattr(stats, "CHUNK_CELLS", 700)  # 7 rows per chunk
        assert bootstrap_ci(values, resamples=300) == whole

    def test_a_bad_confidence_is_refused(self):
        with pytest.raises(ValueError, match="confidence"):
            bootstrap_ci([1.0], confidence=95)


class TestPairedComparison:
    def test_a_clearly_better_candidate_has_a_positive_interval_and_a_tiny_p_value(self):
        baseline = normal(200, 0.5, 0.1)
        candidate = [b + 0.1 + e for b, e in zip(baseline, normal(200, 0, 0.05, seed=2), strict=True)]
        result = paired_comparison(baseline, candidate)
        assert 0 < result.low < result.mean_difference < result.high
        assert result.p_value == pytest.approx(1 / 2001)
        assert result.wins > 190

    def test_identical_runs_differ_by_nothing_with_p_1_and_all_ties(self):
        values = normal(100)
        result = paired_comparison(values, list(values))
        assert (result.mean_difference, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
        assert (result.wins, result.ties, result.losses) == (0, 100, 0)

    def test_a_noisy_tie_has_an_interval_containing_0(self):
        baseline = normal(300, 0.5, 0.2)
        candidate = [b + e for b, e in zip(baseline, normal(300, 0, 0.2, seed=5), strict=True)]
        result = paired_comparison(baseline, candidate)
        assert result.low < 0 < result.high
        assert result.p_value > 0.05

    def test_the_same_seed_gives_the_same_comparison(self):
        baseline, candidate = normal(50), normal(50, seed=2)
        assert paired_comparison(baseline, candidate, seed=4) == paired_comparison(baseline, candidate, seed=4)

    def test_pairs_missing_a_side_are_dropped_and_counted(self):
        result = paired_comparison([1.0, None, 2.0, 3.0], [2.0, 5.0, math.nan, 3.0])
        assert (result.n, result.dropped) == (2, 2)
        assert (result.mean_baseline, result.mean_candidate, result.mean_difference) == (2.0, 2.5, 0.5)
        assert (result.wins, result.ties, result.losses) == (1, 1, 0)

    def test_runs_of_different_lengths_are_refused(self):
        with pytest.raises(ValueError, match="paired"):
            paired_comparison([1.0, 2.0], [1.0])

    def test_it_equals_plain_loops_over_resamples_and_sign_flips(self):
        baseline = np.array([0.2, 0.5, 0.5, 0.9, 0.1, 0.3])
        candidate = np.array([0.4, 0.5, 0.7, 0.8, 0.3, 0.6])
        differences = candidate - baseline
        rng = np.random.default_rng(3)
        means = [differences[rng.integers(0, 6, size=6)].mean() for _ in range(400)]
        flips = np.random.default_rng([3, 1])
        extreme = 0
        for _ in range(400):
            signs = np.array([1.0 - 2.0 * flips.integers(0, 2) for _ in range(6)])
            extreme += abs((signs * differences).sum() / 6) >= abs(differences.mean()) - 1e-12
        result = paired_comparison(baseline, candidate, resamples=400, seed=3)
        assert (result.low, result.high) == tuple(np.percentile(means, [2.5, 97.5]))
        assert result.p_value == pytest.approx((extreme + 1) / 401)
        assert (result.wins, result.ties, result.losses) == (4, 1, 1)

    def test_its_interval_is_the_bootstrap_interval_of_the_differences(self):
        baseline, candidate = normal(80), normal(80, seed=9)
        result = paired_comparison(baseline, candidate, seed=2)
        direct = bootstrap_ci(np.array(candidate) - np.array(baseline), seed=2)
        assert (result.low, result.high) == (direct.low, direct.high)

    def test_ten_thousand_examples_compare_quickly(self):
        result = paired_comparison(normal(10_000), normal(10_000, seed=2))
        assert result.n == 10_000 and 0 < result.p_value <= 1


class TestMostChanged:
    def test_the_largest_changes_come_first_with_their_ids(self):
        changed = most_changed([0.5, 0.5, 0.5, None], [0.4, 1.0, 0.0, 1.0], ids=["a", "b", "c", "d"], limit=2)
        assert changed == [
            {"index": 1, "id": "b", "baseline": 0.5, "candidate": 1.0, "difference": 0.5},
            {"index": 2, "id": "c", "baseline": 0.5, "candidate": 0.0, "difference": -0.5},
        ]

    def test_without_ids_the_index_identifies_the_example(self):
        assert [c["index"] for c in most_changed([1.0, 2.0, 3.0], [1.0, 5.0, 2.0])] == [1, 2, 0]
