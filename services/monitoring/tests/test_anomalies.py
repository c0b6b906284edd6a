"""Unusual outputs: each flag on crafted records and not on ordinary ones, the outlier fences' false-positive share on
fresh samples of their reference's distribution, window assessment, throttling, and the detector's speed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from faker import Faker

from llmops_monitoring.anomalies import AnomalySettings, Detector, Fence, Reference
from llmops_monitoring.anomaly_windows import Group, Throttle, WindowCounter, assess
from llmops_monitoring.records import COLUMNS
from llmops_schemas.events.monitoring import Window

PROSE = (
    "Photosynthesis turns light into chemical energy. In the chloroplasts, chlorophyll absorbs mostly blue and red "
    "light; the energy splits water, releasing oxygen, and drives the synthesis of ATP and NADPH. The Calvin cycle "
    "then uses those carriers to fix carbon dioxide into three-carbon sugars, which the plant assembles into glucose, "
    "starch and cellulose. Rates depend on light intensity, temperature and the concentration of carbon dioxide, so "
    "a greenhouse grower often raises all three together. In 2023 one trial reported yields 14.5% higher at 1,200 ppm."
)
CODE = """Here are the tests:

```python
class TestParse:
    def test_parses_an_integer(self):
        assert parse("1") == 1

    def test_parses_a_negative_integer(self):
        assert parse("-1") == -1

    def test_parses_a_float(self):
        assert parse("1.5") == 1.5

    def test_parses_a_negative_float(self):
        assert parse("-1.5") == -1.5

    def test_rejects_an_empty_string(self):
        with pytest.raises(ValueError):
            parse("")

    def test_rejects_a_word(self):
        with pytest.raises(ValueError):
            parse("one")
```

And the fixture data:

```json
[
  {"id": 1, "name": "alpha", "active": true, "role": "user"},
  {"id": 2, "name": "beta", "active": true, "role": "user"},
  {"id": 3, "name": "gamma", "active": false, "role": "user"},
  {"id": 4, "name": "delta", "active": true, "role": "admin"},
  {"id": 5, "name": "epsilon", "active": true, "role": "user"}
]
```"""
LYRICS = (
    "Row, row, row your boat, gently down the stream. Merrily, merrily, merrily, merrily, life is but a dream. "
    "We sang it in rounds on the bus, each row of seats starting a line later than the one in front, until the "
    "driver laughed and joined in. Row, row, row your boat, gently down the stream; by the third time through "
    "nobody remembered who had started it."
)
CJK_PROSE = (
    "光合作用是植物利用光能把二氧化碳和水转化为有机物并释放氧气的过程。叶绿体中的叶绿素主要吸收红光和蓝光\uff0c"
    "能量用于分解水分子\uff0c产生氧气\uff0c同时合成三磷酸腺苷和还原型辅酶。随后卡尔文循环利用这些能量载体固定二氧化碳\uff0c"
    "生成三碳糖\uff0c植物再把它们组装成葡萄糖、淀粉和纤维素。光照强度、温度以及二氧化碳浓度都会影响反应速率\uff0c"
    "因此温室种植者常常同时提高这三个条件\uff0c以便获得更高的产量和更好的品质\uff0c这在现代农业中十分常见。"
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
        deployment_id="d",
        route="chat",
        api="chat.completions",
        latency_ms=800.0,
        tokens_in=40,
        tokens_out=120,
        finish_reason="stop",
        text_mode="redacted",
        output=PROSE,
        flags=[],
    )
    base.update(fields)
    return base


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(AnomalySettings())


class TestEmptyAndTruncated:
    def test_no_tokens_out_is_empty(self, detector):
        assert detector.flags_of(record(output="", tokens_out=0)) == ["empty"]

    def test_a_blank_output_with_tokens_is_empty(self, detector):
        assert detector.flags_of(record(output=" \n\t", tokens_out=2)) == ["empty"]

    def test_an_unknown_output_with_tokens_is_not_empty(self, detector):
        # A producer that sends no text (text_mode defaults to "redacted" in the schema).
        assert detector.flags_of(record(output=None, tokens_out=50)) == []

    def test_a_tool_call_without_text_is_not_empty(self, detector):
        assert detector.flags_of(record(output="", tokens_out=20, finish_reason="tool_calls")) == []

    def test_finish_reason_length_is_truncated(self, detector):
        assert detector.flags_of(record(finish_reason="length")) == ["truncated"]

    def test_an_ordinary_answer_has_no_flag(self, detector):
        for output in (PROSE, CODE, LYRICS, CJK_PROSE, "Yes.", "42"):
            assert detector.flags_of(record(output=output)) == [], output[:40]

    def test_a_failed_record_has_no_flag(self, detector):
        failed = record(outcome="failed", output=None, tokens_out=None, finish_reason=None, status=502, error="x")
        assert detector.flags_of(failed, Reference.from_values(latency_ms=[10.0] * 50)) == []


class TestHashedText:
    def test_only_token_counts_say_empty(self, detector):
        assert detector.flags_of(record(text_mode="hashed", output=None, tokens_out=0)) == ["empty"]
        assert detector.flags_of(record(text_mode="hashed", output=None, tokens_out=9)) == []

    def test_no_text_kind_even_if_text_came_along(self, detector):
        loop = "I am sorry, but I can't help with that. " * 20 + "mail me: a.b@example.com"
        reference = Reference.from_values(length=[100] * 50, latency_ms=[800] * 50, tokens_out=[120] * 50)
        flags = detector.flags_of(record(text_mode="hashed", output=loop, finish_reason="length"), reference)
        assert flags == ["truncated"]

    def test_latency_and_tokens_outliers_still_apply(self, detector):
        reference = Reference.from_values(latency_ms=[800] * 50, tokens_out=[120] * 50)
        flags = detector.flags_of(record(text_mode="hashed", output=None, latency_ms=9000, tokens_out=2000), reference)
        assert flags == ["latency_outlier", "tokens_outlier"]


class TestRepetition:
    def test_a_sentence_looping_to_the_end_is_repetition(self, detector):
        assert "repetition" in detector.flags_of(record(output=PROSE + " The answer is 42." * 12))

    def test_a_single_word_looping_is_repetition(self, detector):
        assert "repetition" in detector.flags_of(record(output="Sure, " + "no " * 60))

    def test_a_paragraph_repeated_three_times_is_repetition(self, detector):
        assert "repetition" in detector.flags_of(record(output="\n\n".join([PROSE] * 3)))

    def test_a_loop_without_spaces_is_repetition(self, detector):
        assert "repetition" in detector.flags_of(record(output=CJK_PROSE + "我不知道。" * 40))

    def test_ordinary_prose_code_and_lyrics_are_not(self, detector):
        for output in (PROSE, CODE, LYRICS, CJK_PROSE, PROSE + "\n\n" + PROSE, CODE + CODE[:300]):
            assert "repetition" not in detector.flags_of(record(output=output)), output[:40]

    def test_no_loop_in_a_thousand_texts_of_a_small_vocabulary(self, detector):
        fake = Faker("en_US")
        fake.seed_instance(7)
        flagged = sum(detector.loops(fake.text(max_nb_chars=2000)) for _ in range(1000))
        print(f"\nrepetition flagged on {flagged} of 1000 Faker texts")
        assert flagged == 0


class TestPii:
    @pytest.mark.parametrize(
        "output",
        [
            "You can reach Jane Doe at jane.doe@example.com about the invoice.",
            "Call our London office on +44 20 7946 0958 between nine and five.",
            "The payment with card 4111 1111 1111 1111 was declined; please try another.",
            "I have sent the summary to [EMAIL] as you asked.",
            "Her number is [PHONE], and the account is [IBAN].",
        ],
    )
    def test_pii_or_a_redaction_token_is_pii(self, detector, output):
        assert detector.flags_of(record(output=output)) == ["pii"]

    @pytest.mark.parametrize(
        "output",
        [
            PROSE,
            CODE,
            "Version 2.4.1 shipped on 2024-03-15; build 20240315 fixed 12 bugs and cost $1,250,000 in total.",
            "Use list[int] and [x for x in items]; see the [docs] and @decorator usage.",
        ],
    )
    def test_clean_text_is_not(self, detector, output):
        assert "pii" not in detector.flags_of(record(output=output))


class TestRefusal:
    @pytest.mark.parametrize(
        "output",
        [
            "I'm sorry, but I can't help with that request.",
            "I cannot assist with creating malware or anything meant to harm systems.",
            "I can\u2019t help with that.",
            "As an AI language model, I don't have personal opinions about elections.",
            "Thanks for asking. I must respectfully decline to write that.",
            "I apologize, but I am unable to provide medical dosing advice.",
            "I'm not allowed to share internal documents.",
        ],
    )
    def test_a_refusal_is_flagged(self, detector, output):
        assert detector.flags_of(record(output=output)) == ["refusal"]

    @pytest.mark.parametrize(
        "output",
        [
            "I cannot help but notice that your loop never ends; move the increment inside it.",
            "Sure! Here is how to reverse a list in Python: use reversed(items) or items[::-1].",
            "I'm sorry, but I made a mistake above: the capital of Australia is Canberra.",
            "As an AI researcher in 2010, Hinton's student trained the network on GPUs.",
        ],
    )
    def test_an_answer_is_not(self, detector, output):
        assert detector.flags_of(record(output=output)) == []

    def test_only_the_start_is_read(self, detector):
        late = PROSE[:320] + " I can't help with the rest of it."
        assert "refusal" not in detector.flags_of(record(output=late))

    def test_patterns_are_configurable(self):
        custom = Detector(AnomalySettings(refusal_patterns=[r"^\s*d[ée]sol[ée]"], pii_kinds=["email"]))
        assert custom.flags_of(record(output="Désolé, je ne peux pas.")) == ["refusal"]
        assert custom.flags_of(record(output="I'm sorry, but I can't help with that.")) == []

    def test_a_bad_pattern_is_refused(self):
        with pytest.raises(ValueError, match="refusal pattern"):
            AnomalySettings(refusal_patterns=["(unclosed"])


def _normal(rng: np.random.Generator, n: int, shift: float = 1.0) -> dict[str, np.ndarray]:
    """Seeded measures of an ordinary deployment: normal token counts and lengths, lognormal latency."""
    tokens = np.clip(rng.normal(250, 40, n), 1, None).round() * shift
    return {
        "tokens_out": tokens,
        "length": np.clip(tokens * 4 + rng.normal(0, 60, n), 1, None).round(),
        "latency_ms": rng.lognormal(np.log(800), 0.3, n) * shift,
    }


class TestOutliers:
    def test_the_fence_rarely_flags_fresh_samples_of_the_reference(self):
        rng = np.random.default_rng(20250101)
        settings = AnomalySettings()
        reference = Reference.from_values(**_normal(rng, 2000), settings=settings)
        fresh = _normal(rng, 50_000)
        for name, fence in (("length", reference.length), ("latency_ms", reference.latency)):
            share = np.mean([fence.outside(v) for v in fresh[name]])
            print(f"\n{name}: fence {fence}, false-positive share {share:.5f}")
            assert share < settings.thresholds["length_outlier"] / 10
        share = np.mean([reference.tokens.outside(v) for v in fresh["tokens_out"]])
        print(f"tokens_out: fence {reference.tokens}, false-positive share {share:.5f}")
        assert share < settings.thresholds["tokens_outlier"] / 10

    def test_a_planted_shift_is_flagged(self):
        rng = np.random.default_rng(7)
        reference = Reference.from_values(**_normal(rng, 2000))
        slow, short = _normal(rng, 1000, shift=5.0), _normal(rng, 1000, shift=0.2)
        shares = (
            np.mean([reference.latency.outside(v) for v in slow["latency_ms"]]),
            np.mean([reference.tokens.outside(v) for v in short["tokens_out"]]),
            np.mean([reference.length.outside(v) for v in short["length"]]),
        )
        print(f"\nflagged: latency x5 {shares[0]:.3f}, tokens x0.2 {shares[1]:.3f}, length x0.2 {shares[2]:.3f}")
        assert min(shares) > 0.9

    def test_quantiles_give_the_fences_of_the_values(self):
        values = _normal(np.random.default_rng(3), 5000)
        by_values = Reference.from_values(**values)
        quartiles = {k: tuple(np.percentile(v, [25, 50, 75])) for k, v in values.items()}
        by_quantiles = Reference.from_quantiles(**quartiles, counts=dict.fromkeys(quartiles, 5000))
        for a, b in ((by_values.length, by_quantiles.length), (by_values.latency, by_quantiles.latency)):
            assert b.high == pytest.approx(a.high, rel=0.05)
        assert by_quantiles.tokens.low == pytest.approx(by_values.tokens.low, rel=0.05)
        assert by_quantiles.latency.low is None

    def test_equal_reference_values_keep_a_floor(self):
        fence = Reference.from_values(latency_ms=[100.0] * 50).latency
        assert not fence.outside(104) and fence.outside(130)

    def test_too_few_reference_values_give_no_fence(self):
        assert Reference.from_values(latency_ms=[1.0] * 29).latency is None
        assert Reference.from_quantiles(latency_ms=(1, 2, 3), counts={"latency_ms": 10}).latency is None

    def test_quartiles_out_of_order_are_refused(self):
        with pytest.raises(ValueError, match="out of order"):
            Reference.from_quantiles(length=(3, 2, 1))

    def test_records_flag_their_outliers(self, detector):
        reference = Reference.from_records([record(output=PROSE[: 400 + i], tokens_out=100 + i) for i in range(50)])
        flags = detector.flags_of(record(output="Fine.", tokens_out=2, latency_ms=10_000), reference)
        assert flags == ["length_outlier", "latency_outlier", "tokens_outlier"]
        assert detector.flags_of(record(output=PROSE[:420], tokens_out=120), reference) == []

    def test_an_empty_output_is_not_also_a_length_or_tokens_outlier(self, detector):
        reference = Reference(length=Fence(100, 1000), tokens=Fence(20, 300))
        assert detector.flags_of(record(output="", tokens_out=0), reference) == ["empty"]


WINDOW = Window(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 1, 1, 0, 5, tzinfo=UTC))
G = Group("p", "d")


class TestWindowAssessment:
    def test_a_kind_past_its_threshold_is_one_notice(self):
        notices = assess({(G, "refusal"): 3, (G, "truncated"): 4, (G, "pii"): 1}, {G: 20}, AnomalySettings())
        assert [(n.kind, n.flagged, n.share) for n in notices] == [("pii", 1, 0.05), ("refusal", 3, 0.15)]

    def test_a_share_at_the_threshold_is_not_past_it(self):
        assert assess({(G, "refusal"): 2}, {G: 20}, AnomalySettings()) == []

    def test_a_small_window_gives_no_notice(self):
        assert assess({(G, "empty"): 19}, {G: 19}, AnomalySettings()) == []

    def test_the_counter_groups_by_project_and_deployment_with_five_examples(self, detector):
        counter = WindowCounter()
        for i in range(40):
            r = record(request_id=f"r-{i}", output="I can't help with that." if i % 4 == 0 else PROSE)
            counter.add(r, detector.flags_of(r))
        counter.add(record(project="q", deployment_id=None, output=""))  # flags column empty: counted, not flagged
        counter.add(record(outcome="failed", output=None))  # not counted
        (notice,) = counter.notices(AnomalySettings())
        assert notice.key == (G, "refusal") and (notice.flagged, notice.records) == (10, 40)
        assert notice.examples == ("r-0", "r-4", "r-8", "r-12", "r-16")
        assert counter.records[Group("q", "none")] == 1
        event = notice.event(WINDOW)
        assert (event.deployment_id, event.route, event.share, event.threshold) == ("d", "chat", 0.25, 0.1)

    def test_labels_the_records_disagree_on_are_left_out(self):
        counter = WindowCounter()
        for i in range(30):
            counter.add(record(route=f"r{i % 2}", model_version_id="mv", flags=["empty"]))
        (notice,) = counter.notices(AnomalySettings())
        assert (notice.route, notice.model_version_id) == (None, "mv")

    def test_a_stable_window_gives_no_notice_and_a_shifted_one_does(self, detector):
        rng = np.random.default_rng(11)
        reference = Reference.from_values(**_normal(rng, 2000))
        for shift, expected in ((1.0, []), (3.0, ["latency_outlier", "tokens_outlier"])):
            counter = WindowCounter()
            measures = _normal(rng, 500, shift)
            for latency, tokens in zip(measures["latency_ms"], measures["tokens_out"], strict=True):
                r = record(text_mode="hashed", output=None, latency_ms=float(latency), tokens_out=int(tokens))
                counter.add(r, detector.flags_of(r, reference))
            assert [n.kind for n in counter.notices(AnomalySettings())] == expected


class TestThrottle:
    def test_a_pair_never_sent_may_be_sent(self):
        assert Throttle(3600).allows(None, WINDOW.end)

    def test_a_pair_sent_within_the_period_may_not(self):
        throttle = Throttle(3600)
        assert not throttle.allows(WINDOW.end - timedelta(seconds=3599), WINDOW.end)
        assert throttle.allows(WINDOW.end - timedelta(seconds=3600), WINDOW.end)

    def test_select_keeps_only_the_pairs_out_of_their_period(self):
        notices = assess({(G, "refusal"): 5, (G, "empty"): 5}, {G: 20}, AnomalySettings())
        sent = {(G, "refusal"): WINDOW.end - timedelta(minutes=10)}
        assert [n.kind for n in Throttle(3600).select(notices, sent, WINDOW.end)] == ["empty"]


class TestSpeed:
    def test_flags_of_handles_thousands_of_records_a_second(self, detector):
        fake = Faker("en_US")
        fake.seed_instance(5)
        texts = [fake.text(max_nb_chars=600) for _ in range(400)]
        texts += [PROSE, CODE[:500], "I'm sorry, but I can't help with that.", "Mail [EMAIL] or call +44 20 7946 0958."]
        records = [record(output=texts[i % len(texts)], latency_ms=700.0 + i % 200) for i in range(5000)]
        reference = Reference.from_records(records[:500])
        started = time.perf_counter()
        flagged = sum(bool(detector.flags_of(r, reference)) for r in records)
        rate = len(records) / (time.perf_counter() - started)
        mean_chars = sum(len(r["output"]) for r in records) / len(records)
        print(f"\nflags_of: {rate:,.0f} records/s (mean output {mean_chars:.0f} chars, {flagged} flagged)")
        assert rate > 1000
