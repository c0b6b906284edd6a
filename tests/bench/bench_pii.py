"""Benchmark: rows per second of PII redaction (all kinds, all supported locales) through ``llmops.pii`` beside the
redactor dataset ingest used before it (frozen in ``pii_baseline.py``), on the same mixed rows, in one process.

Each round draws new rows (so neither redactor's phone cache has seen them): a third Faker-generated sentences with
planted PII in seven locales, a third clean look-alikes (versions, dates, ISBNs, references, code; see
``libs/tests/pii_labelled.py``), a third ordinary chat text. Both redact the round's rows, in alternating order; the
median of the per-round ratios new/old is the result (target >= 1.0: better recall, no slower). The recall of each on
the planted items is printed beside (an item counts as found when no part of it is left in the text).
Usage: python tests/bench/bench_pii.py [--rows N] [--rounds R]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path

from llmops.pii import PiiRedactor

HERE = Path(__file__).parent
CHAT = [
    "Could you explain how gradient clipping keeps training of a transformer stable when the loss spikes?",
    "Gradient clipping rescales the gradient when its norm exceeds a threshold, so one bad batch cannot push the "
    "weights far; combined with a warm-up of the learning rate it keeps the early steps of training well behaved.",
    "And what threshold would you start with for a model of a few hundred million parameters trained in bf16?",
    "A global norm of 1.0 is the common starting point; watch the fraction of clipped steps and lower it if the loss "
    "still spikes, or raise it if nearly every step is clipped.",
    "Thanks! We moved the run to 8 GPUs at 10:30 and the loss is at 2.31 after 1200 steps.",
]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def mixed_rows(generator, seed: int, n: int) -> tuple[list[str], list[tuple[str, str]]]:
    """``n`` texts (a third each: planted, clean look-alikes, chat) and the planted items (text, value)."""
    labelled = generator.labelled_rows(seed, planted=n // 3, clean=n // 3)
    rng = random.Random(seed)
    chat = [f"{rng.choice(CHAT)} ({seed}-{i})" for i in range(n - len(labelled))]
    texts = [row["text"] for row in labelled] + chat
    rng.shuffle(texts)
    items = [(row["text"], item["value"]) for row in labelled for item in row["pii"]]
    return texts, items


def timed(redact, texts: list[str]) -> tuple[float, dict[str, str]]:
    started = time.perf_counter()
    out = {text: redact(text)[0] for text in texts}
    return len(texts) / (time.perf_counter() - started), out


def recall(out: dict[str, str], items: list[tuple[str, str]]) -> float:
    return sum(value not in out[text] for text, value in items) / len(items)


def main(rows: int, rounds: int) -> None:
    generator = load("pii_labelled", HERE.parents[1] / "libs" / "tests" / "pii_labelled.py")
    baseline = load("pii_baseline", HERE / "pii_baseline.py")
    old, new = baseline.PiiRedactor(baseline.ALL_KINDS), PiiRedactor()
    old.redact("warm up +1 415 555 2671"), new.redact("warm up +1 415 555 2671")  # imports, metadata
    ratios, old_rates, new_rates = [], [], []
    for round_ in range(1, rounds + 1):
        texts, items = mixed_rows(generator, 1000 + round_, rows)
        if round_ % 2:
            old_rate, old_out = timed(old.redact, texts)
            new_rate, new_out = timed(new.redact, texts)
        else:
            new_rate, new_out = timed(new.redact, texts)
            old_rate, old_out = timed(old.redact, texts)
        ratios.append(new_rate / old_rate)
        old_rates.append(old_rate)
        new_rates.append(new_rate)
        print(
            f"round {round_}: {len(texts)} rows ({len(items)} planted items); before {old_rate:7.0f} rows/s "
            f"(recall {recall(old_out, items):.3f}), llmops.pii {new_rate:7.0f} rows/s "
            f"(recall {recall(new_out, items):.3f}), ratio {new_rate / old_rate:.2f}"
        )
    print(
        f"median rows/s: before {statistics.median(old_rates):.0f}, llmops.pii {statistics.median(new_rates):.0f}; "
        f"ratio new/old: {statistics.median(ratios):.2f} (median of {rounds}; target >= 1.0)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6000, help="rows per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each with new rows, the order alternating")
    args = parser.parse_args()
    main(args.rows, args.rounds)
