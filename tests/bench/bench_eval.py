"""Benchmark: scoring N output/reference pairs (default 10,000) with BLEU, chrF and ROUGE-1/2/L/Lsum, per example and
per corpus, through the evaluation scorer path (``llmops.scoring``: configurations parsed and validated, scorers
built, ``score`` with its per-example error handling and checks) beside calling ``sacrebleu`` and ``rouge-score``
directly on the same pairs, in one process, in alternating rounds; each side's median round time. Both sides build
their metric objects inside the round, as a run would (so neither reuses the other's tokenizer caches).
Target ratio (scorer path pairs/s over direct pairs/s): at least 0.9.

Then generation: the evaluation worker's batched generation path (``generate_in_process``: a child process forked
from the preloaded forkserver loads the model, tokenizes, sorts by length, generates batch after batch and streams
each batch's outputs back over a pipe) beside a plain in-process loop of ``model.generate`` over the same batches, on
the tiny model, greedy, with the worker's default batch size and ``min_new_tokens == max_new_tokens`` so both make
the same number of tokens. Each side is timed end to end (model load included on both); rounds alternate which goes
first, after one untimed warm-up of each. Target ratio (worker tokens/s over the loop's): at least 0.9.
Usage: python tests/bench/bench_eval.py [--pairs N] [--rounds R] [--prompts P] [--new-tokens T] [--part all|...]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

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


# -- generation ----------------------------------------------------------------------------------------------------
def prompts(count: int, seed: int = 7) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    return [
        (i, " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))).capitalize() + ":") for i in range(count)
    ]


def worker_path(model_dir: Path, inputs, spec) -> int:
    from llmops_evaluation.ml.process import generate_in_process

    batches: list = []
    generate_in_process(model_dir, None, inputs, spec, on_batch=batches.append)
    assert sum(map(len, batches)) == len(inputs)
    return len(inputs) * spec.max_new_tokens  # every output is that long (min_new_tokens), as the loop's


def plain_loop(model_dir: Path, inputs, spec) -> int:
    """What one would write by hand: load, batch the same way, ``model.generate`` each batch, decode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmops_evaluation.ml.generate import planned_batches

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    encoded = [(i, tokenizer(text)["input_ids"]) for i, text in inputs]
    tokens = 0
    for batch in planned_batches(encoded, spec.batch_size):
        padded = tokenizer.pad({"input_ids": [ids for _, ids in batch]}, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **padded,
                max_new_tokens=spec.max_new_tokens,
                min_new_tokens=spec.min_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, padded["input_ids"].shape[1] :]
        tokenizer.batch_decode(new, skip_special_tokens=True)
        tokens += new.numel()  # every row is max_new_tokens long (min_new_tokens)
    return tokens


def generation(count: int, new_tokens: int, rounds: int) -> None:
    from llmops.ml_runtime import quiet_libraries
    from llmops.tiny_model import build_tiny_model
    from llmops_evaluation.ml.generate import GenerationSpec
    from llmops_evaluation.ml.process import start_forkserver
    from llmops_evaluation.settings import EvaluationSettings

    quiet_libraries()
    batch_size = EvaluationSettings.model_fields["generation_batch_size"].default
    spec = GenerationSpec(max_new_tokens=new_tokens, min_new_tokens=new_tokens, batch_size=batch_size)
    inputs = prompts(count)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = build_tiny_model(Path(scratch) / "tiny")
        start_forkserver()
        expected = worker_path(model_dir, inputs, spec)  # warm-up of each, untimed
        assert plain_loop(model_dir, inputs, spec) == expected == count * new_tokens, expected
        worker_times, plain_times = [], []
        for round_ in range(rounds):
            pair = [(plain_times, plain_loop), (worker_times, worker_path)]
            for times, path in pair if round_ % 2 == 0 else reversed(pair):
                times.append(timed(path, model_dir, inputs, spec))
    plain_rate, worker_rate = expected / statistics.median(plain_times), expected / statistics.median(worker_times)
    print(f"\ngeneration: tiny model, {count} prompts, batch {batch_size}, {new_tokens} new tokens each, greedy")
    print(f"rounds: {rounds}, alternating; medians; model load included on both sides")
    print(f"plain model.generate loop (in-process): {plain_rate:8.0f} tokens/s")
    print(f"worker path (child process, streamed):  {worker_rate:8.0f} tokens/s")
    print(f"ratio worker/plain: {worker_rate / plain_rate:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--part", choices=["all", "scoring", "generation"], default="all")
    arguments = parser.parse_args()
    if arguments.part in ("all", "scoring"):
        main(arguments.pairs, arguments.rounds)
    if arguments.part in ("all", "generation"):
        generation(arguments.prompts, arguments.new_tokens, arguments.rounds)
