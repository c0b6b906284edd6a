"""Release gate rules: parsing, checking against a suite's metrics, and deciding (llmops.scoring.gates)."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.scoring import GateRule, MetricValue, bootstrap_ci, check_gates, decide, paired_comparison, parse_gate


def noisy(n: int, mean: float, sd: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


BASELINE = noisy(300, 30.0, 5.0, seed=1)


def compared(shift: float, noise: float = 1.0) -> dict:
    candidate = BASELINE + shift + noisy(300, 0.0, noise, seed=2)
    return {"production": {"bleu": paired_comparison(BASELINE, candidate)}}


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "rule"),
        [
            ("bleu >= 20", GateRule(metric="bleu", op=">=", threshold=20)),
            ("rouge_l>=0.4", GateRule(metric="rouge_l", op=">=", threshold=0.4)),
            ("judge_score >= 4", GateRule(metric="judge_score", op=">=", threshold=4)),
            ("exact_match > 0.5", GateRule(metric="exact_match", op=">", threshold=0.5)),
            ("length_ok <= 1e-2", GateRule(metric="length_ok", op="<=", threshold=0.01)),
            ("bleu >= production - 1.0", GateRule(metric="bleu", op=">=", baseline="production", margin=-1.0)),
            ("rouge_l >= production", GateRule(metric="rouge_l", op=">=", baseline="production")),
            ("bleu >= champion + 0.5", GateRule(metric="bleu", op=">=", baseline="champion", margin=0.5)),
            ("bleu < prod-eu", GateRule(metric="bleu", op="<", baseline="prod-eu")),
            ("bleu >= production-1", GateRule(metric="bleu", op=">=", baseline="production-1")),
        ],
    )
    def test_the_text_form_parses(self, text, rule):
        assert parse_gate(text) == rule

    def test_the_mapping_form_parses(self):
        assert parse_gate({"metric": "bleu", "op": ">=", "threshold": 20}) == parse_gate("bleu >= 20")
        relative = {"metric": "bleu", "op": ">=", "baseline": "production", "margin": -1.0}
        assert parse_gate(relative) == parse_gate("bleu >= production - 1.0")

    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("bleu>=20.0", "bleu >= 20"),
            ("rouge_l >= 0.4", "rouge_l >= 0.4"),
            ("bleu >= production -1.0", "bleu >= production - 1"),
            ("bleu > champion + 0.25", "bleu > champion + 0.25"),
            ("rouge_l <= production", "rouge_l <= production"),
        ],
    )
    def test_a_rule_renders_as_text_that_parses_back_to_it(self, text, shown):
        rule = parse_gate(text)
        assert rule.text == shown
        assert parse_gate(rule.text) == rule

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("bleu == 20", "unknown operator '=='"),
            ("bleu => 20", "unknown operator '=>'"),
            ("bleu 20", "no comparison operator"),
            ("BLEU >= 20", "metric 'BLEU' is not a metric name"),
            ("rouge-l >= 0.4", "metric 'rouge-l' is not a metric name"),
            ("bleu >=", "nothing after '>='"),
            ("bleu >= 2o", "trailing text 'o' after the number '2'"),
            ("bleu >= 1.2.3", "trailing text '.3'"),
            ("bleu >= -", "'-' is not a number"),
            ("bleu >= production * 2", "trailing text '* 2' after the alias 'production'"),
            ("bleu >= production - x", "margin 'x' after 'production' is not a number"),
            ("bleu >= Production", "neither a number nor an alias"),
            ("bleu >= 1e999", "not a finite number"),
            ({"metric": "bleu", "op": "=", "threshold": 1}, "op: Input should be '>=', '>', '<=' or '<'"),
            ({"metric": "bleu", "op": ">="}, "either a threshold"),
            ({"metric": "bleu", "op": ">=", "threshold": 1, "margin": 1}, "a margin belongs to a relative rule"),
            ({"metric": "bleu", "op": ">=", "threshold": 1, "when": "x"}, "when: Extra inputs"),
            (20, "a gate is a rule text or a mapping, not int"),
        ],
    )
    def test_a_bad_rule_is_refused_naming_what_is_wrong(self, value, message):
        with pytest.raises(ValueError, match=message.replace("*", r"\*").replace(".", r"\.")):
            parse_gate(value)


class TestCheckingAgainstTheSuite:
    def test_sound_rules_have_no_problems(self):
        assert (
            check_gates(["bleu >= 20", {"metric": "rouge_l", "op": ">=", "threshold": 0.4}], {"bleu", "rouge_l"}) == []
        )

    def test_each_problem_names_its_rule_by_index(self):
        problems = check_gates(["bleu >= 20", "rouge_1 >= production", "bleu = 3"], {"bleu", "rouge_l"})
        assert problems[0].startswith("gates[1]: metric 'rouge_1' is not computed by the suite")
        assert "bleu, rouge_l" in problems[0]
        assert problems[1].startswith("gates[2]: rule 'bleu = 3': unknown operator '='")
        assert len(problems) == 2


class TestAbsoluteRules:
    def test_a_value_meeting_the_threshold_passes(self):
        decision = decide(["bleu >= 20"], aggregates={"bleu": MetricValue(value=23.4)}, comparisons={})
        assert decision.passed
        assert decision.rules[0].reason == "bleu 23.4 is at least 20"

    def test_a_value_below_the_threshold_fails(self):
        decision = decide(
            ["bleu >= 20", "exact_match > 0.5"], aggregates={"bleu": 18.2, "exact_match": 0.9}, comparisons={}
        )
        assert not decision.passed
        assert [r.passed for r in decision.rules] == [False, True]
        assert decision.rules[0].reason == "bleu 18.2 is below 20"

    def test_an_interval_is_judged_by_its_mean(self):
        interval = bootstrap_ci([0.3, 0.5, 0.6])
        decision = decide(["rouge_l >= 0.4"], aggregates={"rouge_l": interval}, comparisons={})
        assert decision.passed and decision.rules[0].value == pytest.approx(1.4 / 3)

    def test_a_missing_metric_value_fails_with_its_reason(self):
        decision = decide(
            ["bleu >= 20", "judge_score >= 4"], aggregates={"bleu": MetricValue(value=None)}, comparisons={}
        )
        assert [r.reason for r in decision.rules] == [
            "metric 'bleu' has no value in this run",
            "metric 'judge_score' was not computed in this run",
        ]
        assert not decision.passed

    def test_no_rules_pass(self):
        assert decide([], aggregates={}, comparisons={}).passed


class TestRelativeRules:
    def test_a_clearly_better_candidate_passes(self):
        decision = decide(["bleu >= production"], aggregates={}, comparisons=compared(shift=2.0))
        assert decision.passed
        assert decision.rules[0].bound > 0

    def test_a_clearly_worse_candidate_fails_with_the_bound_in_the_reason(self):
        decision = decide(
            ["bleu >= production - 1.0"],
            aggregates={},
            comparisons=compared(shift=-2.0),
            baseline_labels={"production": "v3"},
        )
        result = decision.rules[0]
        assert not decision.passed
        assert result.reason.startswith(
            f"lower bound {result.bound:.4g} of the difference vs production (v3) is below -1"
        )
        assert result.value == pytest.approx(-2.0, abs=0.2)

    def test_a_noisy_tie_does_not_pass_at_least_as_good(self):
        comparisons = compared(shift=0.0, noise=3.0)
        assert comparisons["production"]["bleu"].low < 0 < comparisons["production"]["bleu"].high
        assert not decide(["bleu >= production"], aggregates={}, comparisons=comparisons).passed

    def test_a_noisy_tie_passes_within_a_margin(self):
        assert decide(["bleu >= production - 1.0"], aggregates={}, comparisons=compared(0.0, noise=3.0)).passed

    def test_at_most_rules_use_the_upper_bound(self):
        result = decide(["bleu <= production"], aggregates={}, comparisons=compared(shift=-2.0)).rules[0]
        assert result.passed and result.bound == compared(shift=-2.0)["production"]["bleu"].high

    def test_no_baseline_run_fails_with_its_reason(self):
        decision = decide(["bleu >= production"], aggregates={}, comparisons={"production": None})
        assert decision.rules[0].reason == "no completed run of this suite for alias 'production'"
        assert decide(["bleu >= champion"], aggregates={}, comparisons={}).rules[0].passed is False

    def test_the_decision_is_json(self):
        decision = decide(["bleu >= production", "bleu >= 20"], aggregates={"bleu": 25.0}, comparisons=compared(2.0))
        dumped = decision.model_dump(mode="json")
        assert dumped["passed"] is True
        assert dumped["rules"][1] == {
            "rule": "bleu >= 20",
            "passed": True,
            "value": 25.0,
            "bound": 25.0,
            "reason": "bleu 25 is at least 20",
        }
