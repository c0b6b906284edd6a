"""The buckets of a batch of records in columns (``metrics_store.buckets_of_table``) are those of the same records
one by one (``metrics_store.buckets_of``): the same keys and, in every bucket, the same counts, sketch bins and float
sums, bit for bit, however the records' nulls, times and dimensions fall."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import numpy as np
import pyarrow as pa
import pytest
from ddsketch import LogarithmicMapping
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops_monitoring import metric_columns
from llmops_monitoring.metrics import BucketKey
from llmops_monitoring.metrics_store import buckets_of, buckets_of_table
from llmops_monitoring.records import SCHEMA
from llmops_monitoring.sketches import RELATIVE_ACCURACY, Sketch
from llmops_schemas.events.monitoring import AnomalyKind

from . import traffic

KINDS = get_args(AnomalyKind)
DEPLOYMENTS = ("dep-a", "dep-b", "dep-c")  # as tests/bench/bench_monitoring.py's inference_events
ROUTES = ("support-chat", "billing-agent")
START = datetime(2026, 11, 30, 11, 59, tzinfo=UTC)  # a minute before an hour's end
#: DDSketch's own mapping, and its bins' edges as it computes them: values its ``math.log`` and numpy's ``log2`` put
#: in neighbouring bins now and then, one ulp below and above each edge too
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_EDGES = np.array([MAPPING._pow_gamma(k) for k in range(-1_200, 1_200)])
EDGES = np.concatenate([_EDGES, np.nextafter(_EDGES, 0), np.nextafter(_EDGES, np.inf)])
TOLERANCE = RELATIVE_ACCURACY * (1 + 1e-9)  # DDSketch's guarantee, plus rounding at a bin's edge


def table_of(records: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=SCHEMA)


def assert_same_buckets(table: pa.Table, records: list[dict[str, Any]] | None = None) -> dict[BucketKey, Any]:
    """The table's buckets are those of its records one by one (``records``, else the table's rows), stored alike."""
    expected = buckets_of(table.to_pylist() if records is None else records)
    found = buckets_of_table(table)
    assert found.keys() == expected.keys()
    for key, bucket in expected.items():
        assert found[key].to_row() == bucket.to_row(), key
        # the JSON stored: Python numbers (json refuses numpy's integers), every float to the last bit
        assert json.dumps(found[key].to_row()) == json.dumps(bucket.to_row()), key
    return found


def benchmark_records(n: int, seed: int, *, minutes: float = 2.0, start: datetime = START) -> list[dict[str, Any]]:
    """The benchmark's traffic: 50 users, three deployments and two routes taken in turn, flags of any kinds."""
    rng = np.random.default_rng(seed)
    records = traffic.records(n, seed=seed, start=start, minutes=minutes)
    for i, record in enumerate(records):
        record["route"], record["deployment_id"] = ROUTES[i % len(ROUTES)], DEPLOYMENTS[i % len(DEPLOYMENTS)]
        record["flags"] = [kind for kind in KINDS if rng.random() < 0.05]
    return records


class TestBenchmarkTraffic:
    def test_a_batch_of_the_benchmark_counts_as_its_records_one_by_one(self):
        found = assert_same_buckets(table_of(benchmark_records(3_000, seed=1)))

        users = {key.user for key in found}
        assert len(users) == 51  # the buckets of all users, and each of the 50's
        assert {key.resolution for key in found} == {"minute", "hour"}
        assert sum(b.requests for k, b in found.items() if k.resolution == "hour" and not k.user) == 3_000

    def test_failed_records_with_and_without_a_status_count_by_kind(self):
        records = benchmark_records(600, seed=2)
        for i, record in enumerate(records[::5]):
            record.update(outcome="failed", status=None if i % 2 else (429, 502)[i % 4 // 2], output=None)

        found = assert_same_buckets(table_of(records))

        kinds = {kind for bucket in found.values() for kind in bucket.errors_by_kind}
        assert {"http_unknown", "http_429", "http_502"} <= kinds

    def test_records_without_a_user_count_only_in_the_buckets_of_all_users(self):
        records = benchmark_records(600, seed=3)
        for i, record in enumerate(records[::3]):
            record["user"] = None if i % 2 else ""

        found = assert_same_buckets(table_of(records))

        everyone = sum(b.requests for k, b in found.items() if k.resolution == "minute" and not k.user)
        per_user = sum(b.requests for k, b in found.items() if k.resolution == "minute" and k.user)
        assert (everyone, per_user) == (600, 400)

    def test_records_without_dimensions_count_under_empty_ones(self):
        records = benchmark_records(600, seed=4)
        for i, record in enumerate(records[::4]):
            name = ("project", "route", "deployment_id", "model_version_id")[i % 4]
            record[name] = None if i % 8 < 4 else ""

        found = assert_same_buckets(table_of(records))

        assert any(not key.project for key in found) and any(not key.deployment_id for key in found)

    def test_records_without_latency_tokens_cost_or_text_count_as_one_by_one(self):
        records = benchmark_records(600, seed=5)
        for i, record in enumerate(records):
            name = ("latency_ms", "time_to_first_token_ms", "tokens_in", "tokens_out", "cost", "input", "output")
            record[name[i % len(name)]] = None
            record["shadow"] = i % 9 == 0

        assert_same_buckets(table_of(records))

    def test_texts_are_measured_in_characters_not_bytes(self):
        records = benchmark_records(100, seed=6)
        for record in records:
            record["input"], record["output"] = "héllo wörld ✓ 🙂" * 3, "日本語のテキスト"

        found = assert_same_buckets(table_of(records))

        assert next(iter(found.values())).input_chars.max == len("héllo wörld ✓ 🙂" * 3)


class TestTimes:
    def test_a_batch_across_minute_and_hour_boundaries_counts_in_each_bucket(self):
        records = benchmark_records(1_500, seed=7, start=datetime(2026, 11, 30, 11, 58, 30, tzinfo=UTC), minutes=63)
        edge = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        for record, moment in zip(
            records, (edge, edge - timedelta(microseconds=1), edge + timedelta(minutes=60)), strict=False
        ):
            record["time"] = moment

        found = assert_same_buckets(table_of(records))

        assert {key.start.hour for key in found if key.resolution == "hour"} == {11, 12, 13}

    def test_naive_times_are_taken_as_utc(self):
        records = benchmark_records(600, seed=8, minutes=90)
        naive = [{**record, "time": record["time"].replace(tzinfo=None)} for record in records]

        table = table_of(naive)

        assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
        assert_same_buckets(table, naive)
        assert buckets_of_table(table) == buckets_of(records)

    def test_times_in_another_zone_count_in_their_minute_and_hour_in_utc(self):
        india = timezone(timedelta(hours=5, minutes=30))  # a half-hour offset: its hours are not UTC's
        records = benchmark_records(600, seed=9, minutes=90)
        shifted = [{**record, "time": record["time"].astimezone(india)} for record in records]

        found = assert_same_buckets(table_of(shifted), shifted)

        assert {key.start.minute for key in found if key.resolution == "hour"} == {0}

    def test_a_table_of_several_chunks_or_a_slice_counts_its_rows(self):
        records = benchmark_records(900, seed=10)
        chunked = pa.concat_tables([table_of(records[:300]), table_of(records[300:])])

        assert chunked["flags"].num_chunks == 2
        assert_same_buckets(chunked, records)
        assert_same_buckets(chunked.slice(150, 500), records[150:650])

    def test_a_record_without_a_time_is_refused(self):
        records = benchmark_records(10, seed=11)
        records[3]["time"] = None

        with pytest.raises(ValueError, match="time"):
            buckets_of_table(table_of(records))


@pytest.fixture
def keys_renumbered_at_every_dimension(monkeypatch):
    """Group keys renumbered after every dimension, as past 2**62 they are."""
    monkeypatch.setattr(metric_columns, "_KEY_LIMIT", 1)


class TestBatches:
    def test_an_empty_batch_has_no_buckets(self):
        assert buckets_of_table(table_of([])) == {} == buckets_of([])

    def test_group_keys_renumbered_between_dimensions_group_the_same(self, keys_renumbered_at_every_dimension):
        records = benchmark_records(600, seed=17, minutes=5)
        for i, record in enumerate(records):
            record["project"] = f"p{i % 7}"

        assert_same_buckets(table_of(records))

    def test_latencies_many_orders_of_magnitude_apart_in_many_buckets_count_exactly(self):
        records = benchmark_records(400, seed=13)
        values = [0.0, 5e-324, 2.2e-308, 1e-300, 1e-9, 1.0, 1e9, 1e300, 1e306]  # summing to less than float's max
        for i, record in enumerate(records):
            record["latency_ms"] = values[i % len(values)]

        found = assert_same_buckets(table_of(records))

        assert max(bucket.latency.max for bucket in found.values() if bucket.latency.count) == 1e306

    @pytest.mark.parametrize("latency", [-1.0, float("nan"), float("inf")])
    def test_a_latency_no_sketch_takes_is_refused_as_one_by_one(self, latency):
        records = benchmark_records(50, seed=14)
        records[7]["latency_ms"] = latency

        with pytest.raises(ValueError, match="a sketch takes"):
            buckets_of(records)
        with pytest.raises(ValueError, match="a sketch takes"):
            buckets_of_table(table_of(records))


class TestBinEdges:
    def test_the_edges_hold_values_ddsketchs_own_logarithm_puts_in_another_bin(self):
        ours = Sketch()
        ours.add_many(EDGES)

        theirs = {MAPPING.key(float(value)) for value in EDGES}

        assert ours.to_json()["k"] != sorted(theirs)  # else this class tests nothing

    def test_a_value_on_a_bin_edge_lands_in_one_bin_however_it_is_added(self):
        for value in EDGES[::5]:
            alone, few, many = Sketch(), Sketch(), Sketch()
            alone.add(value)
            few.add_many([value] * 31)
            many.add_many([value] * 33)

            assert alone.to_json()["k"] == few.to_json()["k"] == many.to_json()["k"], value

    def test_the_stated_accuracy_holds_on_the_edges(self):
        for value in EDGES:
            sketch = Sketch()
            sketch.add(value)

            assert abs(sketch.quantile(0.5) - value) <= TOLERANCE * value, value

    def test_values_added_one_by_one_or_together_have_the_same_sum(self):
        values = np.random.default_rng(15).lognormal(6, 2, size=1_000)
        one_by_one, together = Sketch(), Sketch()
        for value in values:
            one_by_one.add(value)
        together.add_many(values)

        assert one_by_one == together
        assert one_by_one.sum == together.sum

    def test_edges_in_buckets_of_1_31_32_and_33_values_count_as_one_by_one(self):
        record = benchmark_records(1, seed=16)[0]
        records = [
            {**record, "time": START + timedelta(minutes=minute), "latency_ms": float(EDGES[97 * i + size])}
            for minute, size in enumerate((1, 31, 32, 33))
            for i in range(size)
        ]

        found = assert_same_buckets(table_of(records))

        counts = sorted(b.latency.count for k, b in found.items() if k.resolution == "minute" and not k.user)
        assert counts == [1, 31, 32, 33]


# Generated batches: groups of records alike in minute and dimensions, of the sizes at which adding a sketch's
# values changed ways (31, 32, 33), with values on bin edges, zeros, the tiniest and the hugest, and every null.
_MINUTES = [START + timedelta(minutes=m) for m in (0, 1, 2, 61)] + [datetime(1969, 12, 31, 23, 59, tzinfo=UTC)]
_VALUES = st.one_of(
    st.none(),
    st.sampled_from([0.0, 5e-324, 2.2250738585072014e-308, MAPPING.min_possible, 1e-12, 1.0, 1e300, 1e306]),
    st.sampled_from(EDGES.tolist()),
    st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False),
)
_RECORD = traffic.records(1, seed=0)[0]  # every column, the drawn ones replaced
_TEXTS = st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs",)), max_size=12))


@st.composite
def _record(draw: st.DrawFn, minute: datetime, dimensions: dict[str, str | None]) -> dict[str, Any]:
    outcome = draw(st.sampled_from(["completed", "completed", "failed", "cancelled", None]))
    return {
        **_RECORD,
        **dimensions,
        "time": minute + timedelta(microseconds=draw(st.integers(0, 59_999_999))),
        "outcome": outcome,
        "shadow": draw(st.booleans()),
        "latency_ms": draw(_VALUES),
        "time_to_first_token_ms": draw(_VALUES),
        "tokens_in": draw(st.one_of(st.none(), st.integers(-3, 2**40))),
        "tokens_out": draw(st.one_of(st.none(), st.integers(-3, 2**40), st.just(0))),
        "cost": draw(st.one_of(st.none(), st.floats(-1.0, 1e6, allow_nan=False), st.just(0.0))),
        "status": draw(st.one_of(st.none(), st.sampled_from([429, 500, 502, 503]), st.integers(-1, 999))),
        "input": draw(_TEXTS),
        "output": draw(_TEXTS),
        "flags": draw(st.one_of(st.none(), st.lists(st.sampled_from(KINDS), unique=True, max_size=3))),
    }


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = st.sampled_from([None, "", "a", "b", "ü"])
    records = []
    for size in draw(st.lists(st.sampled_from([1, 2, 31, 32, 33]), min_size=1, max_size=4)):
        minute = draw(st.sampled_from(_MINUTES))
        dimensions = {name: draw(names) for name in ("project", "route", "deployment_id", "model_version_id", "user")}
        records += [draw(_record(minute, dimensions)) for _ in range(size)]
    return draw(st.permutations(records))


class TestGeneratedBatches:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batches())
    def test_any_batch_counts_as_its_records_one_by_one(self, records):
        assert_same_buckets(table_of(records))
