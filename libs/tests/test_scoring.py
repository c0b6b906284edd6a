"""The scorers (llmops.scoring): values equal to the metric libraries', per-example errors, checks, configuration."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from pydantic import ValidationError
from rouge_score import rouge_scorer

from llmops.prompts import MAX_REGEX_CHARS
from llmops.scoring import (
    ExampleScore,
    Scorer,
    build_scorer,
    build_scorers,
    custom_scorer_names,
    load_custom_scorer,
    parse_scorer_configs,
    score,
)

# A fixed set: exact, near, reordered, empty, punctuation, numbers, non-ASCII and multi-line pairs.
PAIRS = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("A cat was sitting on the mat.", "The cat sat on the mat."),
    ("the quick brown fox jumps over the lazy dog", "The quick brown fox jumped over the lazy dog."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("", "Nothing was generated."),
    ("I don't know.", "The answer is 42."),
    ("The answer is 42.", "The answer is 42."),
    ("It costs $3.50, doesn't it?", "It costs 3.50 dollars, does it not?"),
    ("Das ist ein Haus.", "Das ist ein Haus."),
    ("Le chat est sur le tapis.", "Le chat dort sur le tapis."),
    ("running runners ran quickly", "the runner runs quick"),
    ("First sentence.\nSecond sentence.", "First sentence.\nAnother second sentence."),
    ("Machine learning models need data.", "Models of machine learning require data."),
    ("yes", "yes"),
    ("no", "yes"),
    ("The meeting is on Monday at 10am.", "The meeting takes place Monday, 10 a.m."),
    ("Water boils at 100 degrees Celsius.", "At sea level, water boils at 100 °C."),
    ("Tokyo is in Japan", "Tokyo is the capital of Japan."),
    ("one two three four five six", "six five four three two one"),
    ("Summaries should be short and precise.", "A summary should be brief and accurate."),
]
OUTPUTS = [o for o, _ in PAIRS]
REFERENCES = [r for _, r in PAIRS]


def run(config: dict, outputs=OUTPUTS, references=REFERENCES, inputs=None):
    return score(build_scorer(parse_scorer_configs([config])[0]), outputs, references, inputs)


class TestValuesEqualTheLibraries:
    def test_bleu_per_example_is_sacrebleus_sentence_bleu(self):
        result = run({"type": "bleu"})
        expected = [sacrebleu.sentence_bleu(o, [r]).score for o, r in PAIRS]
        assert [e.values["bleu"] for e in result.examples] == expected

    def test_bleu_corpus_is_sacrebleus_corpus_bleu_with_its_signatures(self):
        result = run({"type": "bleu"})
        direct = sacrebleu.metrics.BLEU()
        assert result.corpus.values["bleu"] == direct.corpus_score(OUTPUTS, [REFERENCES]).score
        assert result.corpus.signatures["bleu"] == str(direct.get_signature())
        assert "eff:yes" in result.corpus.signatures["bleu.example"]

    def test_bleu_options_reach_sacrebleu(self):
        result = run({"type": "bleu", "lowercase": True, "tokenize": "intl", "smooth_method": "floor"})
        direct = sacrebleu.metrics.BLEU(lowercase=True, tokenize="intl", smooth_method="floor")
        assert result.corpus.values["bleu"] == direct.corpus_score(OUTPUTS, [REFERENCES]).score
        assert result.corpus.signatures["bleu"] == str(direct.get_signature())

    def test_chrf_per_example_and_corpus_are_sacrebleus(self):
        result = run({"type": "chrf"})
        assert [e.values["chrf"] for e in result.examples] == [sacrebleu.sentence_chrf(o, [r]).score for o, r in PAIRS]
        direct = sacrebleu.metrics.CHRF()
        assert result.corpus.values["chrf"] == direct.corpus_score(OUTPUTS, [REFERENCES]).score
        assert result.corpus.signatures["chrf"] == str(direct.get_signature())

    def test_chrf_plus_plus_is_sacrebleus(self):
        result = run({"type": "chrf", "word_order": 2, "metric": "chrf_pp"})
        assert result.corpus.values["chrf_pp"] == sacrebleu.corpus_chrf(OUTPUTS, [REFERENCES], word_order=2).score

    @pytest.mark.parametrize("stemming", [False, True])
    def test_rouge_per_example_is_rouge_scores_f1(self, stemming):
        result = run({"type": "rouge", "use_stemmer": stemming})
        direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stemming)
        for example, (output, reference) in zip(result.examples, PAIRS, strict=True):
            expected = direct.score(reference, output)
            assert example.values == {
                "rouge_1": expected["rouge1"].fmeasure,
                "rouge_2": expected["rouge2"].fmeasure,
                "rouge_l": expected["rougeL"].fmeasure,
                "rouge_lsum": expected["rougeLsum"].fmeasure,
            }

    def test_rouge_corpus_is_the_mean_of_the_examples(self):
        result = run({"type": "rouge", "types": ["rougeL"], "use_stemmer": True})
        direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        expected = math.fsum(direct.score(r, o)["rougeL"].fmeasure for o, r in PAIRS) / len(PAIRS)
        assert result.corpus.values == {"rouge_l": pytest.approx(expected, abs=1e-12)}

    def test_stemming_changes_the_score(self):
        plain = run({"type": "rouge", "types": ["rouge1"]})
        stemmed = run({"type": "rouge", "types": ["rouge1"], "use_stemmer": True})
        assert stemmed.examples[10].values["rouge_1"] > plain.examples[10].values["rouge_1"]


class TestPerExampleErrors:
    def test_an_example_without_a_reference_fails_alone(self):
        references = [*REFERENCES[:3], None, *REFERENCES[4:]]
        result = run({"type": "bleu"}, references=references)
        assert result.error_count == 1
        assert result.examples[3].error == "ValueError: the example has no reference"
        assert all(e.error is None for i, e in enumerate(result.examples) if i != 3)
        kept = [(o, r) for o, r in PAIRS if r != REFERENCES[3]]
        expected = sacrebleu.corpus_bleu([o for o, _ in kept], [[r for _, r in kept]]).score
        assert result.corpus.values["bleu"] == expected

    def test_a_scorer_raising_on_one_example_records_it_and_goes_on(self):
        class Fussy(Scorer):
            name = "fussy"
            metrics = ("length",)

            def score_example(self, output, reference, input):
                if output == "yes":
                    raise RuntimeError("cannot score yes")
                return {"length": float(len(output))}

        result = score(Fussy(), OUTPUTS, REFERENCES)
        assert result.error_count == 1
        assert result.examples[13] == ExampleScore(error="RuntimeError: cannot score yes")
        assert result.examples[14].values == {"length": 2.0}
        assert result.corpus.values["length"] == pytest.approx(
            sum(len(o) for o in OUTPUTS if o != "yes") / (len(OUTPUTS) - 1)
        )

    def test_values_that_are_not_the_metrics_or_not_finite_become_errors(self):
        class Sloppy(Scorer):
            name = "sloppy"
            metrics = ("m",)

            def score_example(self, output, reference, input):
                return {"m": math.nan} if output == "yes" else {"other": 1.0} if output == "no" else {"m": 1.0}

        result = score(Sloppy(), OUTPUTS, REFERENCES)
        assert result.error_count == 2
        assert "not a finite number" in result.examples[13].error
        assert "not ['m']" in result.examples[14].error

    def test_a_batch_that_raises_fails_every_example_and_the_run_goes_on(self):
        class Broken(Scorer):
            name = "broken"
            metrics = ("m",)

            def score_examples(self, outputs, references, inputs=None):
                raise OSError("model server gone")

        result = score(Broken(), OUTPUTS, REFERENCES)
        assert result.error_count == len(OUTPUTS)
        assert result.corpus.values == {"m": None}

    def test_mismatched_lengths_are_the_callers_error(self):
        with pytest.raises(ValueError, match="one entry per example"):
            run({"type": "bleu"}, references=REFERENCES[:-1])


class TestExactMatch:
    @pytest.mark.parametrize(
        ("options", "output", "reference", "matches"),
        [
            ({}, "Paris", "Paris", True),
            ({}, " Paris\n", "Paris", True),
            ({"whitespace": "exact"}, " Paris\n", "Paris", False),
            ({}, "paris", "Paris", False),
            ({"ignore_case": True}, "PARIS", "paris", True),
            ({"ignore_case": True}, "Straße", "STRASSE", True),
            ({}, "New  York", "New York", False),
            ({"whitespace": "collapse"}, "New \t York", "New York", True),
            ({}, "Paris.", "Paris", False),
            ({"ignore_punctuation": True}, "«Paris»!", "Paris", True),
            ({"ignore_punctuation": True}, "$3+4", "34", True),
            ({"ignore_punctuation": True, "ignore_case": True, "whitespace": "collapse"}, "It's - OK!", "its ok", True),
        ],
    )
    def test_normalisation(self, options, output, reference, matches):
        result = run({"type": "exact_match", **options}, [output], [reference])
        assert result.examples[0].values == {"exact_match": 1.0 if matches else 0.0}


class TestChecks:
    def test_contains_all_or_any_optionally_ignoring_case(self):
        outputs = ["Paris is in France", "paris", "Berlin"]
        assert run({"type": "contains", "substrings": ["Paris", "France"]}, outputs, [None] * 3).corpus.values == {
            "contains": pytest.approx(1 / 3)
        }
        any_case = {"type": "contains", "substrings": ["paris", "berlin"], "mode": "any", "ignore_case": True}
        assert [e.values["contains"] for e in run(any_case, outputs, [None] * 3).examples] == [1.0, 1.0, 1.0]

    def test_contains_without_substrings_looks_for_the_reference(self):
        result = run({"type": "contains"}, ["the answer is 42", "no idea"], ["42", "42"])
        assert [e.values["contains"] for e in result.examples] == [1.0, 0.0]

    def test_regex_searches_or_matches_whole(self):
        outputs = ["order #123 shipped", "#123"]
        search = run({"type": "regex", "pattern": r"#\d+"}, outputs, [None, None])
        whole = run({"type": "regex", "pattern": r"#\d+", "mode": "fullmatch"}, outputs, [None, None])
        assert [e.values["regex"] for e in search.examples] == [1.0, 1.0]
        assert [e.values["regex"] for e in whole.examples] == [0.0, 1.0]

    def test_regex_is_re2_a_backreference_is_refused_with_its_reason(self):
        with pytest.raises(ValidationError, match=r"pattern[\s\S]*not RE2 syntax"):
            parse_scorer_configs([{"type": "regex", "pattern": r"(a)\1"}])

    def test_regex_length_limit_is_the_prompts_one(self):
        with pytest.raises(ValidationError, match="pattern"):
            parse_scorer_configs([{"type": "regex", "pattern": "a" * (MAX_REGEX_CHARS + 1)}])

    def test_a_pathological_pattern_runs_in_linear_time(self):
        result = run({"type": "regex", "pattern": r"^(a+)+$"}, ["a" * 50_000 + "b"], [None])
        assert result.examples[0].values == {"regex": 0.0}

    def test_json_schema_validity_with_the_reason_when_invalid(self):
        schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
        result = run(
            {"type": "json_schema", "json_schema": schema}, ['{"answer": 42}', '{"answer": "x"}', "42 ."], [None] * 3
        )
        assert [e.values["json_valid"] for e in result.examples] == [1.0, 0.0, 0.0]
        assert result.examples[2].detail == "the output is not JSON"
        assert result.error_count == 0

    def test_json_schema_with_a_remote_ref_is_refused(self):
        with pytest.raises(ValidationError, match="not local"):
            parse_scorer_configs([{"type": "json_schema", "json_schema": {"$ref": "https://example.com/s.json"}}])

    def test_length_bounds_in_characters_and_words(self):
        config = {"type": "length", "min_words": 2, "max_chars": 10}
        result = run(config, ["one", "one two", "one two three"], [None] * 3)
        assert [e.values["length_ok"] for e in result.examples] == [0.0, 1.0, 0.0]


class TestConfiguration:
    def test_an_unknown_scorer_is_named(self):
        with pytest.raises(ValidationError, match="'blue'"):
            parse_scorer_configs([{"type": "blue"}])

    def test_an_unknown_option_is_named(self):
        with pytest.raises(ValidationError) as caught:
            parse_scorer_configs([{"type": "bleu", "tokenizer": "13a"}])
        assert caught.value.errors()[0]["loc"] == (0, "bleu", "tokenizer")

    def test_a_bad_option_value_is_named(self):
        with pytest.raises(ValidationError) as caught:
            parse_scorer_configs([{"type": "rouge", "types": ["rouge3"]}])
        assert caught.value.errors()[0]["loc"][:3] == (0, "rouge", "types")

    def test_length_needs_a_bound(self):
        with pytest.raises(ValidationError, match="at least one of min_chars"):
            parse_scorer_configs([{"type": "length"}])

    def test_two_scorers_producing_one_metric_are_refused(self):
        configs = parse_scorer_configs([{"type": "contains", "substrings": ["a"]}, {"type": "contains"}])
        with pytest.raises(ValueError, match="metric 'contains'"):
            build_scorers(configs)

    def test_an_unknown_custom_scorer_is_named_with_the_installed_ones(self):
        with pytest.raises(ValidationError, match=r"no custom scorer 'nope' is installed \(installed: .*word_overlap"):
            parse_scorer_configs([{"type": "custom", "entry_point": "nope"}])

    def test_an_unknown_custom_option_is_named(self):
        with pytest.raises(ValidationError, match=r"options\.lowercase: Extra inputs"):
            parse_scorer_configs([{"type": "custom", "entry_point": "word_overlap", "options": {"lowercase": True}}])


class TestCustomScorers:
    def test_the_example_package_is_found_as_an_entry_point(self):
        assert "word_overlap" in custom_scorer_names()
        assert issubclass(load_custom_scorer("word_overlap"), Scorer)

    def test_the_entry_point_scorer_runs(self):
        config = {"type": "custom", "entry_point": "word_overlap", "options": {"ignore_case": False}}
        result = run(config, ["The cat sat", "the cat", "x"], ["the cat sat", "the cat", ""])
        assert [e.values.get("word_overlap") for e in result.examples] == [pytest.approx(2 / 3), 1.0, None]
        assert result.error_count == 1
        assert result.corpus.values["word_overlap"] == pytest.approx((2 / 3 + 1) / 2)
