"""The scorer interface: per-example scores, corpus aggregates, and the one function that runs a scorer safely."""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

#: An error message is cut to this many characters: it is stored per example.
MAX_ERROR_CHARS = 500

#: A metric's name as gates and stored scores use it.
MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class ScorerOptions(BaseModel):
    """Base of a scorer's options: frozen, and an option it does not know is an error that names it."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class ExampleScore:
    """One example's score: a value per metric, or an ``error`` when scoring this example failed (then no values).

    ``detail`` is an optional short note on the score (why a JSON answer was invalid), never needed to read it.
    ``unparseable`` marks an example whose scorer got an answer it could not read a score from (an LLM judge's reply
    without a valid score): it has no values and its ``error`` says why, but it is counted apart from failures
    (:attr:`ScorerResult.unparseable_count`), never as a zero. ``details`` holds JSON-like facts about how the
    example was scored (a judge's raw answer and model).
    """

    values: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    detail: str | None = None
    unparseable: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, exc: BaseException | str) -> ExampleScore:
        """The score of an example whose scoring raised ``exc`` (its type and message, cut to a bounded size)."""
        message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return cls(error=message[:MAX_ERROR_CHARS])

    @classmethod
    def unparsed(cls, reason: str, details: Mapping[str, Any] | None = None) -> ExampleScore:
        """The score of an example whose answer held no readable score (``reason`` says why): no value, no zero."""
        return cls(error=reason[:MAX_ERROR_CHARS], unparseable=True, details=details or {})


@dataclass(frozen=True, slots=True)
class CorpusScore:
    """A scorer's corpus-level result: a value per metric (``None`` when no example could be scored).

    ``signatures`` holds what makes a value reproducible where the metric's library gives it (sacrebleu's signature
    string, keyed by metric; ``<metric>.example`` for its per-example variant).
    """

    values: Mapping[str, float | None]
    signatures: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScorerResult:
    """What :func:`score` returns: every example's score, the corpus aggregate, the number of failed examples and
    of examples whose answer had no readable score (``unparseable_count``, not among the errors)."""

    scorer: str
    examples: list[ExampleScore]
    corpus: CorpusScore
    error_count: int
    unparseable_count: int = 0


class Scorer(ABC):
    """A scorer: a ``name``, the ``metrics`` it produces, scores per example and an aggregate over the corpus.

    Subclasses implement :meth:`score_example` (one example; the default :meth:`score_examples` calls it for each
    example and records what it raises as that example's error) or override :meth:`score_examples` to work in
    batches. :meth:`aggregate` defaults to the mean of each metric over the examples scored without error.
    A scorer that takes options declares them as a pydantic model in ``Options`` (``extra="forbid"``): the
    configuration is validated with it and the instance is passed to ``__init__`` as ``options``.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel] | None] = None
    #: The metric names; a class attribute when fixed, set in ``__init__`` when they depend on options.
    metrics: tuple[str, ...] = ()

    def score_example(self, output: str, reference: str | None, input: str | None) -> Mapping[str, float]:
        """The metric values of one output (against its reference, given its input): one value per metric."""
        raise NotImplementedError(f"{type(self).__name__} implements neither score_example nor score_examples")

    def score_examples(
        self,
        outputs: Sequence[str],
        references: Sequence[str | None],
        inputs: Sequence[str | None] | None = None,
    ) -> list[ExampleScore]:
        """Every example's score, in order; an example whose scoring raises gets an error and the others go on."""
        scores = []
        for output, reference, input in zip(outputs, references, inputs or [None] * len(outputs), strict=True):
            try:
                scores.append(ExampleScore(self.score_example(output, reference, input)))
            except Exception as exc:  # a scorer may be user code: its failure is that example's, not the run's
                scores.append(ExampleScore.failed(exc))
        return scores

    def aggregate(
        self, outputs: Sequence[str], references: Sequence[str | None], examples: Sequence[ExampleScore]
    ) -> CorpusScore:
        """Corpus-level values; by default each metric's mean over the examples scored without error."""
        return CorpusScore(mean_values(self.metrics, examples))


def mean_values(metrics: Sequence[str], examples: Sequence[ExampleScore]) -> dict[str, float | None]:
    """Each metric's mean over the examples that have it (``None`` when none has)."""
    means: dict[str, float | None] = {}
    for metric in metrics:
        values = [e.values[metric] for e in examples if e.error is None and metric in e.values]
        means[metric] = math.fsum(values) / len(values) if values else None
    return means


def score(
    scorer: Scorer,
    outputs: Sequence[str],
    references: Sequence[str | None],
    inputs: Sequence[str | None] | None = None,
) -> ScorerResult:
    """Run ``scorer`` over a corpus: per-example scores, the aggregate and the error count.

    What a scorer gets wrong is recorded, not raised: an example whose values are not exactly the scorer's metrics
    as finite numbers becomes an error; a whole batch that raises (or returns the wrong number of scores) is an
    error on every example; a failing aggregate leaves every corpus value ``None``. Only mismatched input lengths raise.
    """
    if len(references) != len(outputs) or (inputs is not None and len(inputs) != len(outputs)):
        raise ValueError("outputs, references and inputs must have one entry per example")
    try:
        examples = scorer.score_examples(outputs, references, inputs)
        if len(examples) != len(outputs):
            raise ValueError(f"score_examples returned {len(examples)} scores for {len(outputs)} examples")
    except Exception as exc:  # a batch scorer's failure fails its examples, not the run
        examples = [ExampleScore.failed(exc)] * len(outputs)
    expected = set(scorer.metrics)
    examples = [_checked(example, expected) for example in examples]
    try:
        corpus = scorer.aggregate(outputs, references, examples)
    except Exception:  # the per-example scores stand; the corpus has no value
        corpus = CorpusScore(dict.fromkeys(scorer.metrics))
    unparseable = sum(example.unparseable for example in examples)
    error_count = sum(example.error is not None for example in examples) - unparseable
    return ScorerResult(scorer.name, examples, corpus, error_count, unparseable)


def _checked(example: Any, expected: set[str]) -> ExampleScore:
    if not isinstance(example, ExampleScore):
        return ExampleScore.failed(f"the scorer returned {type(example).__name__}, not an ExampleScore")
    if example.error is not None:
        return example
    if example.unparseable:
        return ExampleScore.failed("the scorer marked an example unparseable without saying why")
    values = example.values
    if values.keys() != expected:
        return ExampleScore.failed(f"the scorer returned metrics {sorted(values)}, not {sorted(expected)}")
    for metric, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return ExampleScore.failed(f"metric {metric!r} is {value!r}, not a finite number")
    return example
