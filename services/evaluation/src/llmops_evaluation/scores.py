"""A run's scores: every scorer of the suite on the outputs that were generated, each example's record (what the
artifact and ``run_examples`` hold), and each metric's summary with its bootstrap interval.

Examples without an output (their row was unusable, or generation failed) are not scored: each counts as an error of
every metric. A scorer's per-example errors and unparseable answers are counted apart, as the scorers report them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmops.scoring import ScorerResult, bootstrap_ci, build_scorers, parse_scorer_configs, score
from llmops_evaluation.examples import Example, RowError, input_text
from llmops_evaluation.ml.generate import Generated
from llmops_schemas.events.evaluation import MetricSummary

#: The bootstrap's seed: the same scores give the same intervals.
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class RunScores:
    """Each example's record (ordered by index), each metric's summary, and the scorers' signatures."""

    records: list[dict[str, Any]]
    metrics: dict[str, MetricSummary]
    signatures: dict[str, str]


def score_run(
    examples: Sequence[Example],
    row_errors: Sequence[RowError],
    generated: dict[int, Generated],
    scorer_configs: list[dict[str, Any]],
    *,
    resamples: int,
    on_scorer_done: Callable[[int], None] = lambda scored: None,
) -> RunScores:
    """Score the run (blocking: call it off the event loop); ``on_scorer_done`` gets how many examples each scorer
    scored as it ends."""
    scorers = build_scorers(parse_scorer_configs(scorer_configs))
    records: dict[int, dict[str, Any]] = {}
    for row in row_errors:
        records[row.index] = _record(row.index, None, None, None, None, {"example": row.error})
    scored: list[Example] = []
    for example in examples:
        result = generated.get(example.index) or Generated(example.index, None, error="no output was generated")
        errors = {} if result.output is not None else {"generation": result.error or "no output"}
        records[example.index] = _record(example.index, example.input, result.output, example.reference, result, errors)
        if result.output is not None:
            scored.append(example)
    outputs = [records[e.index]["output"] for e in scored]
    references = [e.reference for e in scored]
    inputs = [input_text(e.input) for e in scored]
    unscored = len(records) - len(scored)
    metrics: dict[str, MetricSummary] = {}
    signatures: dict[str, str] = {}
    for scorer in scorers:
        result = score(scorer, outputs, references, inputs)
        _record_scores(records, scored, result)
        signatures.update(result.corpus.signatures)
        for metric in scorer.metrics:
            metrics[metric] = _summary(metric, result, unscored, resamples)
        on_scorer_done(len(scored))
    return RunScores([records[index] for index in sorted(records)], metrics, signatures)


def _record(index, input, output, reference, result: Generated | None, errors: dict[str, str]) -> dict[str, Any]:
    return {
        "index": index,
        "input": input,
        "output": output,
        "reference": reference,
        "scores": {},
        "errors": errors,
        "unparseable": {},
        "latency_ms": None if result is None else result.latency_ms,
        "tokens": 0 if result is None else result.tokens,
        "details": {},
    }


def _record_scores(records: dict[int, dict[str, Any]], scored: Sequence[Example], result: ScorerResult) -> None:
    for example, example_score in zip(scored, result.examples, strict=True):
        record = records[example.index]
        if example_score.unparseable:
            record["unparseable"][result.scorer] = example_score.error
        elif example_score.error is not None:
            record["errors"][result.scorer] = example_score.error
        else:
            record["scores"].update(example_score.values)
        if example_score.details:
            record["details"][result.scorer] = dict(example_score.details)


def _summary(metric: str, result: ScorerResult, unscored: int, resamples: int) -> MetricSummary:
    values = [None if e.error is not None else e.values.get(metric) for e in result.examples]
    interval = bootstrap_ci(values, resamples=resamples, seed=BOOTSTRAP_SEED)
    corpus = result.corpus.values.get(metric)
    return MetricSummary(
        value=interval.mean if corpus is None else corpus,
        mean=interval.mean,
        low=interval.low,
        high=interval.high,
        n=interval.n,
        errors=result.error_count + unscored,
        unparseable=result.unparseable_count,
    )
