"""Benchmark: scoring N output/reference pairs (default 10,000) with BLEU, chrF and ROUGE-1/2/L/Lsum, per example and
per corpus, through the evaluation scorer path (``llmops.scoring``: configurations parsed and validated, scorers
built, ``score`` with its per-example error handling and checks) beside calling ``sacrebleu`` and ``rouge-score``
directly on the same pairs, in one process, in alternating rounds; each side's median round time. Both sides build
their metric objects inside the round, as a run would (so neither reuses the other's tokenizer caches).
Target ratio (scorer path pairs/s over direct pairs/s): at least 0.9.

The issue's second benchmark, the worker's batched generation tokens/s beside a plain ``model.generate`` loop,
belongs to the step that builds the evaluation worker; it is not measured here yet.
Usage: python tests/bench/bench_eval.py [--pairs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU, CHRF

from llmops.scoring import build_scorers, parse_scorer_configs, score

CONFIGS = [{"type": "bleu"}, {"type": "chrf"}, {"type": "rouge", "use_stemmer": True}]
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
VOCABULARY = (
    "the a model answer question data training evaluation score of to in is was for on with by as that this it "
    "be are from at which large language small quickly result results paper method methods shows show improves "
    "baseline better worse new test set example examples output outputs reference references token tokens"
)
WORDS = VOCABULARY.split()


def corpus(n: int, seed: int = 16) -> tuple[list[str], list[str]]:
    """``n`` reference sentences (6 to 30 words) and outputs made from them by dropping, swapping and replacing."""
    rng = random.Random(seed)
    outputs, references = [], []
    for _ in range(n):
        reference = [rng.choice(WORDS) for _ in range(rng.randint(6, 30))]
        output = [w for w in reference if rng.random() > 0.15]
        for i in range(len(output)):
            if rng.random() < 0.1:
                output[i] = rng.choice(WORDS)
        if len(output) > 2 and rng.random() < 0.5:
            i = rng.randrange(len(output) - 1)
            output[i], output[i + 1] = output[i + 1], output[i]
        references.append(" ".join(reference).capitalize() + ".")
        outputs.append(" ".join(output).capitalize() + ".")
    return outputs, references


def through_scorers(outputs: list[str], references: list[str]) -> dict[str, float | None]:
    corpus_values: dict[str, float | None] = {}
    for scorer in build_scorers(parse_scorer_configs(CONFIGS)):
        result = score(scorer, outputs, references)
        assert result.error_count == 0
        corpus_values.update(result.corpus.values)
    return corpus_values


def direct(outputs: list[str], references: list[str]) -> dict[str, float]:
    bleu, sentence_bleu, chrf = BLEU(), BLEU(effective_order=True), CHRF()
    rouge = RougeScorer(ROUGE_TYPES, use_stemmer=True)
    per_example_bleu = [sentence_bleu.sentence_score(o, [r]).score for o, r in zip(outputs, references, strict=True)]
    per_example_chrf = [chrf.sentence_score(o, [r]).score for o, r in zip(outputs, references, strict=True)]
    per_example_rouge = [rouge.score(r, o) for o, r in zip(outputs, references, strict=True)]
    assert len(per_example_bleu) == len(per_example_chrf) == len(per_example_rouge)
    values = {
        "bleu": bleu.corpus_score(outputs, [references]).score,
        "chrf": chrf.corpus_score(outputs, [references]).score,
    }
    for kind, metric in zip(ROUGE_TYPES, ["rouge_1", "rouge_2", "rouge_l", "rouge_lsum"], strict=True):
        values[metric] = sum(s[kind].fmeasure for s in per_example_rouge) / len(per_example_rouge)
    return values


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main(n: int, rounds: int) -> None:
    outputs, references = corpus(n)
    platform_values, direct_values = through_scorers(outputs, references), direct(outputs, references)
    assert platform_values.keys() == direct_values.keys()
    for metric, value in direct_values.items():
        assert abs(platform_values[metric] - value) < 1e-9, (metric, platform_values[metric], value)
    direct_times, platform_times = [], []
    for round_ in range(rounds):  # the two paths take turns going first, so warm-up favours neither
        pair = [(direct_times, direct), (platform_times, through_scorers)]
        for times, path in pair if round_ % 2 == 0 else reversed(pair):
            times.append(timed(path, outputs, references))
    direct_rate, platform_rate = n / statistics.median(direct_times), n / statistics.median(platform_times)
    print(f"pairs: {n}, metrics: BLEU, chrF (sacrebleu), ROUGE-1/2/L/Lsum with stemming (rouge-score)")
    print(
        f"rounds: {rounds}, alternating; medians. Corpus values: "
        + ", ".join(f"{m} {v:.4g}" for m, v in direct_values.items())
    )
    print(f"sacrebleu + rouge-score directly:  {direct_rate:8.0f} pairs/s")
    print(f"llmops.scoring scorer path:       {platform_rate:8.0f} pairs/s")
    print(f"ratio scorer path/direct: {platform_rate / direct_rate:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    main(arguments.pairs, arguments.rounds)
