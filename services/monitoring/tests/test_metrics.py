"""Metrics in buckets: 50,000 synthetic records aggregated per minute, rolled up to hours and summarised agree with
numpy on the same records: counts and token sums exactly, percentiles within the sketches' stated error."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from llmops_monitoring.metrics import (
    METRIC_NAMES,
    Bucket,
    BucketKey,
    add_feedback,
    aggregate,
    is_metric_name,
    metric_value,
    rollup,
    summarise,
)
from llmops_monitoring.sketches import RELATIVE_ACCURACY

START = datetime(2026, 3, 1, 10, 40, tzinfo=UTC)
DEPLOYMENTS = {
    "dep-a": ("mv-1", "chat"),
    "dep-b": ("mv-2", "chat"),
    "dep-c": ("mv-3", "summarise"),
    None: (None, "ext"),
}
FLAGS = ("repetition", "empty_output", "too_long")
STATUSES = (429, 500, 502, 503)
TOLERANCE = RELATIVE_ACCURACY * (1 + 1e-9)  # DDSketch's guarantee, plus rounding at a bin's edge


def synthetic_records(n: int, seed: int = 11) -> list[dict]:
    """``n`` records over 45 minutes across an hour's boundary, four deployments (one unnamed), two projects and
    twelve users (some unnamed): lognormal latencies with a few zeros, 6% failures, streamed answers with a TTFT."""
    rng = np.random.default_rng(seed)
    deployments = list(DEPLOYMENTS)
    latency = rng.lognormal(np.log(900), 0.8, size=n)
    latency[rng.random(n) < 0.01] = 0.0
    failed = rng.random(n) < 0.06
    stream = rng.random(n) < 0.5
    records = []
    for i in range(n):
        deployment = deployments[rng.integers(len(deployments))]
        model_version, route = DEPLOYMENTS[deployment]
        tokens_in, tokens_out = int(rng.integers(1, 2_000)), int(rng.integers(0, 800))
        user = None if rng.random() < 0.1 else f"user-{rng.integers(12)}"
        records.append(
            {
                "time": START + timedelta(seconds=float(rng.uniform(0, 45 * 60))),
                "outcome": "failed" if failed[i] else "completed",
                "project": "proj-1" if deployment != "dep-c" else "proj-2",
                "route": route,
                "shadow": bool(rng.random() < 0.05),
                "deployment_id": deployment,
                "model_version_id": model_version,
                "user": user,
                "latency_ms": float(latency[i]),
                "time_to_first_token_ms": (
                    float(latency[i] * rng.uniform(0.05, 0.5)) if stream[i] and not failed[i] else None
                ),
                "tokens_in": tokens_in,
                "tokens_out": (int(rng.integers(0, 20)) if rng.random() < 0.5 else None) if failed[i] else tokens_out,
                "cost": 0.0 if failed[i] else tokens_in * 1e-6 + tokens_out * 3e-6,
                "status": int(rng.choice(STATUSES)) if failed[i] else None,
                "input": "x" * int(rng.integers(1, 400)),
                "output": None if failed[i] else "y" * int(rng.integers(0, 1_200)),
                "flags": [f for f in FLAGS if rng.random() < 0.02],
            }
        )
    return records


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return synthetic_records(50_000)


@pytest.fixture(scope="module")
def minutes(records) -> dict:
    return aggregate(records)


@pytest.fixture(scope="module")
def hours(minutes) -> dict:
    return rollup(minutes)


def numpy_summary(records: list[dict]) -> dict:
    def column(name):
        return np.array([r[name] if r[name] is not None else np.nan for r in records], dtype=float)

    failed = np.array([r["outcome"] == "failed" for r in records])
    tokens_out = np.nan_to_num(column("tokens_out"))
    latency = column("latency_ms")
    timed = ~failed & (tokens_out > 0)
    kinds, kind_counts = np.unique(
        [f"http_{r['status']}" for r in records if r["outcome"] == "failed"], return_counts=True
    )
    flags, flag_counts = np.unique([f for r in records for f in r["flags"]], return_counts=True)
    return {
        "requests": len(records),
        "errors": int(failed.sum()),
        "errors_by_kind": dict(zip(kinds.tolist(), kind_counts.tolist(), strict=True)),
        "tokens_in": int(np.nan_to_num(column("tokens_in")).sum()),
        "tokens_out": int(tokens_out.sum()),
        "cost": float(column("cost").sum()),
        "tokens_per_second": float(tokens_out[timed].sum() / (latency[timed] / 1000).sum()),
        "flags": dict(zip(flags.tolist(), flag_counts.tolist(), strict=True)),
        "latency": latency,
        "ttft": column("time_to_first_token_ms")[~np.isnan(column("time_to_first_token_ms"))],
    }


def worst_quantile_error(summary: dict, field: str, values: np.ndarray) -> float:
    """The largest relative distance between a summary's p50/p95/p99 and the value at the rank DDSketch answers for,
    floor(q * (n - 1)) in sorted order: numpy's ``method="lower"``."""
    worst = 0.0
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = float(np.quantile(values, q, method="lower"))
        assert exact == np.sort(values)[math.floor(q * (len(values) - 1))]
        estimate = summary[field][name]
        worst = max(worst, abs(estimate - exact) / exact if exact else abs(estimate))
    return worst


class TestAggregateRollupSummarise:
    def test_fifty_thousand_records_summarise_as_numpy_counts_them(self, records, hours):
        summary = summarise(hours.values())
        expected = numpy_summary(records)

        for name in ("requests", "errors", "errors_by_kind", "tokens_in", "tokens_out", "flags"):
            assert summary[name] == expected[name], name
        assert summary["error_rate"] == expected["errors"] / expected["requests"]
        # float sums added in another order: the only difference is rounding
        assert summary["cost"] == pytest.approx(expected["cost"], rel=1e-12)
        assert summary["tokens_per_second"] == pytest.approx(expected["tokens_per_second"], rel=1e-12)
        assert summary["latency_ms"]["count"] == len(expected["latency"])
        assert summary["latency_ms"]["mean"] == pytest.approx(expected["latency"].mean(), rel=1e-12)
        assert summary["ttft_ms"]["count"] == len(expected["ttft"])

    def test_percentiles_of_many_merged_buckets_are_within_one_percent_of_numpy(self, records, minutes, hours):
        expected = numpy_summary(records)
        summary = summarise(hours.values())

        worst = max(
            worst_quantile_error(summary, "latency_ms", expected["latency"]),
            worst_quantile_error(summary, "ttft_ms", expected["ttft"]),
        )

        print(
            f"\n{len(records)} records, {len(minutes)} minute buckets, {len(hours)} hour buckets: "
            f"worst p50/p95/p99 relative error {worst:.5f} (allowed {RELATIVE_ACCURACY})"
        )
        assert worst <= TOLERANCE

    def test_each_deployments_percentiles_are_within_one_percent_of_numpy(self, records, hours):
        worst = 0.0
        for deployment in DEPLOYMENTS:
            own = [r for r in records if r["deployment_id"] == deployment]
            summary = summarise(b for k, b in hours.items() if k.deployment_id == (deployment or ""))
            expected = numpy_summary(own)
            assert summary["requests"] == expected["requests"]
            worst = max(worst, worst_quantile_error(summary, "latency_ms", expected["latency"]))
            worst = max(worst, worst_quantile_error(summary, "ttft_ms", expected["ttft"]))

        print(f"\nper deployment: worst relative error {worst:.5f}")
        assert worst <= TOLERANCE

    def test_minutes_rolled_up_are_the_hours_aggregated_directly(self, records, hours):
        direct = aggregate(records, resolution="hour")

        assert hours.keys() == direct.keys()
        assert {k.start for k in hours} == {datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC)}
        for key, bucket in direct.items():
            rolled, row = hours[key].to_row(), bucket.to_row()
            for sketch in ("latency", "ttft", "input_chars", "output_chars"):
                assert _without_sum(rolled.pop(sketch)) == _without_sum(row.pop(sketch))
            assert rolled.pop("cost") == pytest.approx(row.pop("cost"), rel=1e-12)
            assert rolled.pop("output_tokens_seconds") == pytest.approx(row.pop("output_tokens_seconds"), rel=1e-12)
            assert rolled == row

    def test_rolling_up_leaves_the_minutes_as_they_were(self, records):
        minutes = aggregate(records[:500])
        before = {key: bucket.to_row() for key, bucket in minutes.items()}

        rollup(minutes)

        assert {key: bucket.to_row() for key, bucket in minutes.items()} == before

    def test_an_hour_cannot_be_split_into_minutes(self, hours):
        with pytest.raises(ValueError):
            rollup(hours, resolution="minute")


class TestBucketKeys:
    def test_a_records_key_is_its_minute_in_utc_with_no_missing_dimensions(self):
        moment = datetime(2026, 3, 1, 12, 7, 59, 999, tzinfo=timezone(timedelta(hours=2)))
        record = {"time": moment, "project": "p", "route": "r", "deployment_id": None, "model_version_id": None}

        key = BucketKey.of(record)

        assert key == BucketKey("minute", datetime(2026, 3, 1, 10, 7, tzinfo=UTC), "p", "r", "", "", "")
        assert key.at("hour").start == datetime(2026, 3, 1, 10, tzinfo=UTC)

    def test_a_key_round_trips_through_its_row(self):
        key = BucketKey("hour", datetime(2026, 3, 1, 10, 30, tzinfo=UTC), "p", "r", "d", "m", "u")

        assert BucketKey.from_row(key.to_row()) == key
        assert key.to_row()["start"] == datetime(2026, 3, 1, 10, tzinfo=UTC)

    def test_an_unknown_resolution_is_refused(self):
        with pytest.raises(ValueError):
            BucketKey("day", START)  # type: ignore[arg-type]

    def test_shadow_records_count_under_their_own_deployment(self):
        base = synthetic_records(40, seed=5)
        shadow = [{**r, "shadow": True, "deployment_id": "dep-shadow"} for r in base[:10]]

        summary = summarise(b for k, b in aggregate(base + shadow).items() if k.deployment_id == "dep-shadow")

        assert summary["requests"] == 10


class TestBuckets:
    def test_a_bucket_round_trips_through_json_exactly(self, minutes):
        bucket = next(iter(minutes.values()))

        row = json.loads(json.dumps(bucket.to_row()))

        assert Bucket.from_row(row).to_row() == bucket.to_row()

    def test_merging_is_associative_and_commutative(self, records):
        parts = (records[:300], records[300:600], records[600:900])
        a, b, c = (next(iter(aggregate(part, "hour").values())) for part in parts)

        left = _merged(_merged(a, b), c)
        right = _merged(a, _merged(b, c))
        backwards = _merged(_merged(c, b), a)

        for other in (right, backwards):
            assert summarise([left])["latency_ms"] == pytest.approx(summarise([other])["latency_ms"], rel=1e-12)
            assert summarise([left])["requests"] == summarise([other])["requests"]
            assert summarise([left])["flags"] == summarise([other])["flags"]

    def test_tokens_per_second_leaves_out_failed_records_partial_tokens(self):
        completed = {"time": START, "outcome": "completed", "latency_ms": 2_000.0, "tokens_out": 100, "tokens_in": 5}
        failed = {"time": START, "outcome": "failed", "status": 502, "latency_ms": 10.0, "tokens_out": 50}

        summary = summarise(aggregate([completed, failed]).values())

        assert summary["tokens_per_second"] == 50.0
        assert summary["tokens_out"] == 150
        assert summary["errors_by_kind"] == {"http_502": 1}

    def test_feedback_is_counted_in_its_bucket(self):
        buckets: dict = {}
        key = BucketKey("minute", START, "p", "r")

        for rating in (5, 4, 1):
            add_feedback(buckets, key, rating)

        assert summarise(buckets.values())["feedback_mean"] == pytest.approx(10 / 3)

    @pytest.mark.parametrize("rating", [0, 6, True])
    def test_a_rating_outside_one_to_five_is_refused(self, rating):
        with pytest.raises(ValueError):
            add_feedback({}, BucketKey("minute", START), rating)


class TestMetricValues:
    def test_every_metric_name_has_a_value_in_a_full_summary(self, hours):
        rated = Bucket()
        rated.add_feedback(3)
        summary = summarise([*hours.values(), rated])

        values = {name: metric_value(summary, name) for name in METRIC_NAMES}

        assert all(isinstance(v, float) for v in values.values()), values
        assert values["latency_p99"] == summary["latency_ms"]["p99"]
        assert values["ttft_p95"] == summary["ttft_ms"]["p95"]
        assert metric_value(summary, "errors.http_502") == summary["errors_by_kind"]["http_502"]
        assert metric_value(summary, "flags.repetition") == summary["flags"]["repetition"]
        assert metric_value(summary, "flags.never_seen") == 0.0

    def test_an_empty_summary_has_no_rates_or_percentiles(self):
        summary = summarise([])

        assert metric_value(summary, "requests") == 0.0
        for name in ("error_rate", "latency_p95", "ttft_p50", "tokens_per_second", "feedback_mean"):
            assert metric_value(summary, name) is None, name

    @pytest.mark.parametrize("name", ["latency_p42", "flags.", "nope", "errors_by_kind"])
    def test_an_unknown_metric_is_refused(self, name):
        assert not is_metric_name(name)
        with pytest.raises(ValueError):
            metric_value(summarise([]), name)


def _merged(*buckets: Bucket) -> Bucket:
    total = Bucket()
    for bucket in buckets:
        total.merge(bucket)
    return total


def _without_sum(sketch: dict) -> dict:
    return {k: v for k, v in sketch.items() if k != "s"}
