"""A batch flagged as one table (``Detector.flags_of_table``) gets, row for row, the flags ``flags_of`` gives each
record: on the synthetic traffic, on adversarial records (hypothesis) and under other settings; the prefilters'
premises (Python's whitespace and case folding, what ``may_hold_pii`` needs); and ``count_table`` writes the anomaly
counts ``count`` writes."""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from llmops.db import Database
from llmops.pii import TOKENS, PiiRedactor
from llmops_monitoring import anomaly_store
from llmops_monitoring.anomalies import AnomalySettings, Detector, Fence, Reference
from llmops_monitoring.flag_columns import case_variants, every_char, required_literals
from llmops_monitoring.models import anomaly_counts
from llmops_monitoring.records import COLUMNS, SCHEMA

from . import traffic

References = Mapping[tuple[str, str], Reference | None]
BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def table_of(records: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=SCHEMA).drop_columns(["flags"])


def row_by_row(detector: Detector, table: pa.Table, references: References) -> list[list[str]]:
    """flags_of of each row as a dict, against its deployment's reference (none without a deployment)."""
    flags = []
    for i in range(table.num_rows):
        row = table.slice(i, 1).to_pylist()[0]
        deployment = row["deployment_id"]
        flags.append(
            detector.flags_of(row, None if deployment is None else references.get((row["project"], deployment)))
        )
    return flags


def assert_row_by_row(detector: Detector, table: pa.Table, references: References) -> list[list[str]]:
    expected = row_by_row(detector, table, references)
    assert detector.flags_of_table(table, references) == expected
    return expected


def reference_of(records: list[dict[str, Any]]) -> Reference:
    """Fences of a traffic sample, narrow enough (k = 2) that the traffic's own tails cross them."""
    done = [r for r in records if r["outcome"] == "completed"]
    return Reference.from_values(
        length=[len(r["output"]) for r in done if r["output"]],
        latency_ms=[r["latency_ms"] for r in done],
        tokens_out=[r["tokens_out"] for r in done if r["tokens_out"]],
        settings=AnomalySettings(outlier_k=2.0),
    )


def record(**fields: Any) -> dict[str, Any]:
    """A completed record with every column; ``fields`` override."""
    base = dict.fromkeys(COLUMNS)
    base.update(
        event_id="e-1",
        time=datetime(2025, 1, 1, tzinfo=UTC),
        outcome="completed",
        request_id="r-1",
        project="p",
        deployment_id="d1",
        latency_ms=800.0,
        tokens_out=120,
        finish_reason="stop",
        text_mode="redacted",
        output="Fine.",
        flags=[],
    )
    base.update(fields)
    return base


DEFAULT = Detector()
#: Settings the defaults do not cover: each changes what a prefilter has to keep.
CUSTOM = {
    "patterns the gate reads": AnomalySettings(
        refusal_patterns=[r"^\s*d[ée]sol[ée]", r"\bk(?:ein|ann nicht)\b", r"(ab)\1", r"no{2,}pe", r"(?i:STRASSE)"],
        refusal_scan_chars=40,
        pii_kinds=["email"],
    ),
    "a lookahead pattern the gate cannot read": AnomalySettings(
        refusal_patterns=[r"(?=.*\bnope\b)", r"I(?! am) can\b"], pii_kinds=["phone", "card"]
    ),
    "no refusal patterns, short loops": AnomalySettings(
        refusal_patterns=[],
        repetition_gram=1,
        repetition_min_repeats=2,
        repetition_min_words=2,
        repetition_min_grams=2,
        repetition_max_distinct=1.0,
    ),
    "long grams, no distinct share, a long scan": AnomalySettings(
        repetition_gram=3, repetition_min_words=100, repetition_max_distinct=0.0, refusal_scan_chars=5000
    ),
}
CUSTOM_DETECTORS = {name: Detector(s) for name, s in CUSTOM.items()}

REFERENCES = {
    ("p", "d1"): Reference(length=Fence(20, 400), latency=Fence(None, 1000.0), tokens=Fence(5, 200)),
    # bounds where an int and a float compare differently than two floats would (2**53 + 1 > 2.0**53)
    ("p", "d2"): Reference(length=Fence(0.5, 2.5), latency=Fence(None, math.inf), tokens=Fence(-math.inf, 2.0**53)),
    ("p", ""): Reference(length=Fence(math.nan, math.nan), tokens=Fence(1e300, -1e300)),
    ("q", "d1"): None,
}


class TestTraffic:
    def test_traffic_with_every_shift_gets_each_rows_flags(self):
        references = {
            ("demo", "dep-1"): reference_of(traffic.records(2000, seed=3)),
            ("demo", "dep-2"): reference_of(traffic.records(500, seed=4, shift="slower")),
        }
        records = traffic.records(3000, seed=11, shift=traffic.ALL_SHIFTS)
        records += traffic.records(1000, seed=12, deployment_id="dep-2")
        records += traffic.records(500, seed=13, text_mode="hashed", shift="slower")
        records += traffic.records(500, seed=14, deployment_id=None)
        expected = assert_row_by_row(DEFAULT, table_of(records), references)
        seen = {kind for flags in expected for kind in flags}
        assert seen >= {"empty", "truncated", "refusal", "length_outlier", "latency_outlier", "tokens_outlier"}

    def test_a_table_in_chunks_and_a_slice_of_one_get_each_rows_flags(self):
        records = traffic.records(1200, seed=21)
        records[5]["output"] = "Mail [EMAIL] or call +44 20 7946 0958. " + "again and again " * 30
        records[6]["output"] = "I am sorry but I cannot help with that request. " * 10
        references = {("demo", "dep-1"): reference_of(traffic.records(1000, seed=22))}
        chunked = pa.concat_tables([table_of(records[i : i + 300]) for i in range(0, 1200, 300)])
        expected = assert_row_by_row(DEFAULT, chunked, references)
        assert {"pii", "repetition", "refusal"} <= set(expected[5]) | set(expected[6])
        assert_row_by_row(DEFAULT, chunked.slice(7, 900), references)

    def test_an_empty_table_and_one_without_texts_are_flagged(self):
        assert DEFAULT.flags_of_table(table_of([]), {}) == []
        records = [record(output=None, tokens_out=0), record(output=None, text_mode="hashed", latency_ms=5000.0)]
        assert assert_row_by_row(DEFAULT, table_of(records), REFERENCES) == [["empty"], ["latency_outlier"]]

    @pytest.mark.parametrize("name", sorted(CUSTOM))
    def test_traffic_under_other_settings_gets_each_rows_flags(self, name):
        records = traffic.records(1500, seed=31, shift="topic")
        records[3]["output"] = "Désolé. I can help, nope, nope. Kein Problem: abab STRAẞE " * 3
        references = {("demo", "dep-1"): reference_of(traffic.records(1000, seed=32))}
        assert_row_by_row(CUSTOM_DETECTORS[name], table_of(records), references)


# --- adversarial records ------------------------------------------------------------------------------------------

SPACES = [" ", "  ", "\n", "\t", "\r\n", "\x0b", "\x1c", "\u00a0", "\u2009", "\u3000", "\u2028", "\x85"]
WORDS = ["the", "answer", "is", "42", "no", "nope", "I", "can't", "help", "refund", "émigré", "日本", "🙂", "kein"]
REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I am afraid but this is not something I can do.",
    "I cannot assist with creating malware.",
    "I can\u2019t help with that.",
    "As an AI language model, I don't have opinions.",
    "I must respectfully decline to write that.",
    "I apologise, but I won't share it.",
    "I'm not authorised to share internal documents.",
    "Your request goes against the policy.",
    "I cannot help but notice the loop.",
    "Désolé, je ne peux pas.",
    "Das kann nicht sein; kein Zugriff.",
]
PII = [
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "+44 20 7946 0958",
    "call 020 7946 0958",
    "192.168.10.4:8080",
    "fe80::1ff:fe23:4567:890a",
    "GB82 WEST 1234 5698 7654 32",
    "SSN 123-45-6789",
    *sorted(TOKENS.values()),
    "[email]",
    "[IBAN",
    "icon@2x.png",
    "version 2.4.1",
]
#: What re.IGNORECASE matches to these letters beyond their ASCII case (dotted and dotless I, long s, Kelvin sign).
CASE_TWINS = {"i": "\u0130\u0131", "I": "\u0130\u0131", "s": "\u017f", "S": "\u017f", "k": "\u212a", "K": "\u212a"}


def vary_case(text: str, rnd: random.Random) -> str:
    out = []
    for char in text:
        roll = rnd.random()
        out.append(
            rnd.choice(CASE_TWINS[char])
            if char in CASE_TWINS and roll < 0.3
            else char.swapcase()
            if roll < 0.5
            else char
        )
    return "".join(out)


def prose(n: int, seed: int) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(string.ascii_lowercase) * rnd.randint(1, 3) + rnd.choice(WORDS) for _ in range(n))


refusals = st.builds(vary_case, st.sampled_from(REFUSALS), st.randoms(use_true_random=False))
fragments = st.one_of(
    refusals,
    st.builds(lambda n, text: "x" * n + " " + text, st.integers(250, 320), refusals),  # about the scan's end
    st.sampled_from(PII),
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.builds(
        lambda unit, n, space: space.join([unit] * n),
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
        st.integers(2, 40),
        st.sampled_from(SPACES),
    ),
    st.builds(lambda unit, n: unit * n, st.sampled_from(["我不知道。", "ab", "=", "[0, ", "é"]), st.integers(10, 300)),
    st.builds(prose, st.integers(1, 800), st.integers(0, 100)),
)
outputs = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "\n\t", "\u3000", "\x1c \x85"]),
    st.builds(lambda parts, space: space.join(parts), st.lists(fragments, max_size=5), st.sampled_from(SPACES)),
)
records = st.builds(
    record,
    outcome=st.sampled_from(["completed", "completed", "completed", "failed", None]),
    text_mode=st.sampled_from(["redacted", "redacted", "hashed", None]),
    finish_reason=st.sampled_from(["stop", "length", "tool_calls", "function_call", None]),
    tokens_out=st.one_of(
        st.none(), st.just(0), st.integers(0, 5000), st.sampled_from([2**53, 2**53 + 1, 2**63 - 1, -1])
    ),
    latency_ms=st.one_of(st.none(), st.floats(allow_nan=True), st.floats(0, 5000)),
    output=outputs,
    project=st.sampled_from(["p", "q"]),
    deployment_id=st.sampled_from(["d1", "d2", "", None, "unknown"]),
)


class TestAdversarialRecords:
    @BOUNDED
    @given(st.lists(records, min_size=1, max_size=25))
    def test_adversarial_records_get_each_rows_flags(self, batch):
        assert_row_by_row(DEFAULT, table_of(batch), REFERENCES)

    @pytest.mark.parametrize("name", sorted(CUSTOM))
    @BOUNDED
    @given(batch=st.lists(records, min_size=1, max_size=25))
    def test_adversarial_records_under_other_settings_get_each_rows_flags(self, name, batch):
        assert_row_by_row(CUSTOM_DETECTORS[name], table_of(batch), REFERENCES)

    @pytest.mark.parametrize("name", ["default", *sorted(CUSTOM)])
    def test_loops_at_the_fewest_words_and_grams_they_need_get_each_rows_flags(self, name):
        detector = DEFAULT if name == "default" else CUSTOM_DETECTORS[name]
        s = detector.settings
        least = [s.repetition_min_words, s.repetition_min_grams + s.repetition_gram - 1, 5 * s.repetition_min_words]
        outputs = []
        for n in {w + d for w in least for d in (-1, 0, 1) if w + d > 0}:
            outputs += [" ".join(["no"] * n), " ".join(f"w{i % 7}" for i in range(n)), "我" * n, "ab" * (n // 2)]
        expected = assert_row_by_row(detector, table_of([record(output=o) for o in outputs]), {})
        assert any("repetition" in flags for flags in expected)

    @pytest.mark.parametrize("prefix", ["x", "\u00e9", "\U0001f642"])
    @pytest.mark.parametrize("refusal", ["I cannot help", "As an AI,"])  # each a whole match
    def test_a_refusal_ending_at_the_last_scanned_character_is_one(self, prefix, refusal):
        outputs = [prefix * (299 - len(refusal) + shift) + " " + refusal for shift in (-1, 0, 1)]
        flags = assert_row_by_row(DEFAULT, table_of([record(output=o) for o in outputs]), {})
        assert ["refusal" in kinds for kinds in flags] == [True, True, False]

    def test_token_counts_past_float_precision_compare_exactly(self):
        batch = [record(deployment_id="d2", output=None, tokens_out=n) for n in (2**53, 2**53 + 1, 2**63 - 1)]
        assert assert_row_by_row(DEFAULT, table_of(batch), REFERENCES) == [[], ["tokens_outlier"], ["tokens_outlier"]]

    def test_unicode_case_variants_of_a_refusal_are_refusals(self):
        texts = ["I'm \u017forry, but I can't help.", "A\u017f an A\u0130, I think", "\u0131 must decline", "kein"]
        batch = [record(output=text) for text in texts]
        assert assert_row_by_row(DEFAULT, table_of(batch), {}) == [["refusal"]] * 3 + [[]]
        custom = CUSTOM_DETECTORS["patterns the gate reads"]
        assert assert_row_by_row(custom, table_of([record(output="\u212aein Zugriff")]), {}) == [["refusal"]]


class TestPrefilters:
    def test_the_default_patterns_and_readable_custom_ones_have_a_gate(self):
        assert DEFAULT._refusal_gate is not None
        assert CUSTOM_DETECTORS["patterns the gate reads"]._refusal_gate is not None
        assert CUSTOM_DETECTORS["a lookahead pattern the gate cannot read"]._refusal_gate is None

    @pytest.mark.parametrize(
        ("pattern", "literals"),
        [
            (r"\bas an AI(?: model)?(?:,| I\b)", {"as an AI,", "as an AI I", "as an AI mod"}),
            (r"I must (?:respectfully )?decline", {"I must decli", "I must respe"}),
            (r"(ab)\1x", {"ab"}),
            (r"no{2,}pe", {"oo"}),
            (r"a*", None),
            (r"(?=.*nope)", None),
            (r"x|.", None),
        ],
    )
    def test_required_literals_are_what_every_match_holds(self, pattern, literals):
        found = required_literals(pattern, re.IGNORECASE)
        assert found == (None if literals is None else frozenset(literals))

    @BOUNDED
    @given(st.text(st.characters(codec="utf-8"), max_size=60), st.sampled_from(REFUSALS), st.randoms())
    def test_the_gate_keeps_every_text_the_refusal_regex_finds(self, noise, refusal, rnd):
        text = noise + vary_case(refusal, rnd)
        if DEFAULT._refusal.search(text, 0, 300):
            assert pc.match_substring_regex(pa.array([text[:300]]), DEFAULT._refusal_gate)[0].as_py()

    def test_case_variants_are_every_code_point_re_matches_to_each_character(self):
        chars = frozenset("".join(required_literals(DEFAULT._refusal.pattern, re.IGNORECASE))) | {"k", "\u00df"}
        every = every_char()
        variants = case_variants(chars)
        assert {c: set(variants[c]) for c in chars} == {
            c: set(re.findall(re.escape(c), every, re.IGNORECASE)) for c in chars
        }
        assert set(variants["i"]) == {"i", "I", "\u0130", "\u0131"} and set(variants["k"]) == {"k", "K", "\u212a"}

    def test_python_whitespace_is_what_split_and_re_agree_on(self):
        every = every_char()
        assert set(re.findall(r"\s", every)) == {c for c in every if c.isspace()}
        assert all(len(f"a{c}b".split()) == 2 for c in re.findall(r"\s", every))

    def test_arrow_counts_and_slices_code_points_as_python_does(self):
        texts = ["é\u0301🙂日本" * 3, "a\U0010ffffb", "", "\u3000x"]
        assert pc.utf8_length(pa.array(texts)).to_pylist() == [len(t) for t in texts]
        assert pc.utf8_slice_codeunits(pa.array(texts), 0, 4).to_pylist() == [t[:4] for t in texts]

    @BOUNDED
    @given(st.text(st.characters(codec="utf-8", exclude_characters="@:0123456789"), max_size=200))
    def test_may_hold_pii_needs_an_at_a_colon_or_an_ascii_digit(self, text):
        assert not PiiRedactor().may_hold_pii(text)


# --- counts -----------------------------------------------------------------------------------------------------------


def counted_traffic() -> tuple[list[dict[str, Any]], pa.Table]:
    """Flagged traffic over several windows and groups: deployments named, none and empty; failed records; request
    ids missing or empty; a kind twice in a row's flags; more flagged records per window than examples kept."""
    records = traffic.records(1500, seed=41, minutes=30) + traffic.records(300, seed=42, deployment_id="dep-2")
    records += traffic.records(200, seed=43, deployment_id=None) + traffic.records(200, seed=44, deployment_id="")
    table = table_of(records)
    flags = DEFAULT.flags_of_table(table, {("demo", "dep-1"): reference_of(traffic.records(1000, seed=45))})
    for i, (row, kinds) in enumerate(zip(records, flags, strict=True)):
        row["flags"] = kinds + (["refusal", "refusal"] if i % 97 == 0 else [])
        row["request_id"] = None if i % 13 == 0 else "" if i % 17 == 0 else row["request_id"]
    return records, table_of(records)


def by_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["project"], r["deployment_id"], r["window_start"], r["kind"]))


class TestCountTable:
    def test_a_tables_rows_are_those_of_its_records(self):
        records, table = counted_traffic()
        flags = [row["flags"] for row in records]
        expected = anomaly_store._record_rows(records, 300)
        assert by_key(anomaly_store._table_rows(table, flags, 300)) == by_key(expected)
        assert any(len(row["examples"]) == 10 for row in expected)

    @BOUNDED
    @given(
        st.lists(
            st.builds(
                record,
                time=st.datetimes(datetime(1900, 1, 1), datetime(9999, 12, 30), timezones=st.just(UTC)),
                outcome=st.sampled_from(["completed", "completed", "failed", None]),
                request_id=st.sampled_from(["r-1", "r-2", "", None]),
                project=st.sampled_from(["p", "q"]),
                deployment_id=st.sampled_from(["d1", "", None]),
                flags=st.lists(st.sampled_from(["empty", "pii", "refusal"]), max_size=3),
            ),
            max_size=40,
        ),
        st.sampled_from([1, 60, 300, 86400]),
    )
    def test_any_times_and_flags_give_the_rows_of_the_records(self, batch, seconds):
        flags = [row["flags"] for row in batch]
        table = table_of(batch)
        records = [{**row, "flags": kinds} for row, kinds in zip(table.to_pylist(), flags, strict=True)]
        expected = anomaly_store._record_rows(records, seconds)
        assert by_key(anomaly_store._table_rows(table, flags, seconds)) == by_key(expected)

    @pytest.mark.parametrize("seconds", [1, 300])
    def test_window_starts_are_window_ofs_before_1970_and_past_float_precision(self, seconds):
        # int(timestamp()) rounds the exact quotient once; past 2**53 microseconds a float of them rounds twice
        times = [
            datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
            datetime(2839, 5, 6, 4, 22, 20, 999998, tzinfo=UTC),
            datetime(6435, 5, 5, 10, 51, 26, 999990, tzinfo=UTC),
        ]
        starts = anomaly_store._window_starts(
            pa.chunked_array([pa.array(times, pa.timestamp("us", tz="UTC"))]), seconds
        )
        assert [datetime.fromtimestamp(s, UTC) for s in starts.tolist()] == [
            anomaly_store.window_of(t, seconds) for t in times
        ]

    def test_flags_of_another_length_are_refused(self):
        with pytest.raises(ValueError, match="flag lists"):
            anomaly_store._table_rows(table_of([record()]), [], 300)

    @pytest.mark.integration
    async def test_count_table_writes_the_rows_count_writes(self, monitoring_settings):
        records, table = counted_traffic()
        flags = [row["flags"] for row in records]
        db = Database(monitoring_settings.db_url)
        written = []
        try:
            for add in (
                lambda session: anomaly_store.count(session, records, window_seconds=300),
                lambda session: anomaly_store.count_table(session, table, flags, window_seconds=300),
            ):
                async with db.transaction() as session:
                    await add(session)
                    await add(session)  # the second adds to the first's rows
                async with db.transaction() as session:
                    query = select(anomaly_counts).order_by(*anomaly_counts.primary_key.columns)
                    written.append([tuple(row) for row in (await session.execute(query)).all()])
                    await session.execute(delete(anomaly_counts))
        finally:
            await db.dispose()
        assert written[0] == written[1]
        assert len(written[0]) > 20 and any(row[3] == "" and row[4] > 100 for row in written[0])
        assert {row[3] for row in written[0]} >= {"", "refusal", "truncated", "empty"}
