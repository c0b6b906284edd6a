"""Scorers: what the evaluation service and its workers compute on model outputs, per example and per corpus.

Built-in scorers use the libraries that define their metrics: ``bleu`` and ``chrf`` (sacrebleu, signature strings
recorded), ``rouge`` (rouge-score: ROUGE-1/2/L/Lsum F1, optional stemming), and checks scored 1.0 or 0.0:
``exact_match`` (normalisation options), ``contains``, ``regex`` (RE2), ``json_schema`` and ``length``, and
``judge``: an LLM behind an OpenAI-compatible endpoint scores each output with a rubric (a prompt template) as
metric ``judge_score``; an answer without a valid score is counted as unparseable (``unparseable_count``), never
as a zero (:mod:`llmops.scoring.judge`). Suites
configure them with :func:`parse_scorer_configs`; :func:`build_scorers` makes them and :func:`score` runs one::

    configs = parse_scorer_configs([{"type": "bleu"}, {"type": "rouge", "use_stemmer": True}])
    for scorer in build_scorers(configs):
        result = score(scorer, outputs, references)   # result.examples, result.corpus, result.error_count

**The scorer interface** (:class:`Scorer`), for custom scorers:

- ``name`` (class attribute) and ``metrics``: the metric names it produces (a tuple; set in ``__init__`` when
  they depend on options). Metric names are lower-case identifiers (``word_overlap``).
- ``score_examples(outputs, references, inputs=None) -> list[ExampleScore]``: one score per example, in order,
  each with a float per metric, or ``ExampleScore.failed(exc)`` for an example that could not be scored. The default
  calls ``score_example(output, reference, input) -> {metric: value}`` for each example and records what it raises
  as that example's error, so a scorer usually implements just ``score_example``. ``references`` and ``inputs``
  hold ``None`` where an example has none. ``ExampleScore.unparsed(reason, details)`` marks an example whose
  answer held no readable score (counted in ``unparseable_count``, not as an error).
- ``aggregate(outputs, references, examples) -> CorpusScore``: corpus-level values; the default is each metric's
  mean over the examples scored without error. Override it for metrics that are not means (corpus BLEU).
- ``Options``: an optional pydantic model (subclass :class:`ScorerOptions`, which forbids unknown options); when
  set, the suite's ``options`` are validated with it and passed to ``__init__(options)``, otherwise ``__init__()``
  takes nothing.

:func:`score` guards against a misbehaving scorer: values that are not exactly its metrics as finite numbers, a
batch that raises, or an aggregate that raises become recorded errors, never an exception of the run.

**Custom scorers** are installed packages that register a :class:`Scorer` subclass as an entry point of group
``llmops.scorers``; a suite uses one as ``{"type": "custom", "entry_point": "<name>", "options": {...}}``::

    [project.entry-points."llmops.scorers"]
    word_overlap = "llmops_example_scorers:WordOverlap"

``examples/scorers`` in the repository is such a package.

**Comparing runs and gating releases**: :func:`bootstrap_ci` (a mean and its seeded bootstrap interval),
:func:`paired_comparison` (two runs on the same examples: paired interval of the difference, sign-flip p-value,
wins/ties/losses) and :func:`most_changed` (:mod:`llmops.scoring.stats`); gate rules such as ``bleu >= 20`` or
``bleu >= production - 1.0`` are parsed by :func:`parse_gate`, checked against a suite by :func:`check_gates` and
judged by :func:`decide`, a relative rule on the bound of the paired interval (:mod:`llmops.scoring.gates`).
"""

from llmops.scoring.base import (
    CorpusScore,
    ExampleScore,
    MetricName,
    Scorer,
    ScorerOptions,
    ScorerResult,
    mean_values,
    score,
)
from llmops.scoring.gates import (
    GateDecision,
    GateResult,
    GateRule,
    MetricValue,
    check_gates,
    decide,
    parse_gate,
)
from llmops.scoring.judge import JudgeOptions, JudgeScorer, read_score
from llmops.scoring.registry import (
    BUILT_IN,
    ENTRY_POINT_GROUP,
    CustomScorerConfig,
    ScorerConfig,
    build_scorer,
    build_scorers,
    custom_scorer_names,
    load_custom_scorer,
    parse_scorer_configs,
)
from llmops.scoring.stats import Comparison, Interval, bootstrap_ci, most_changed, paired_comparison

__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "Comparison",
    "CorpusScore",
    "CustomScorerConfig",
    "ExampleScore",
    "GateDecision",
    "GateResult",
    "GateRule",
    "Interval",
    "JudgeOptions",
    "JudgeScorer",
    "MetricName",
    "MetricValue",
    "Scorer",
    "ScorerConfig",
    "ScorerOptions",
    "ScorerResult",
    "bootstrap_ci",
    "build_scorer",
    "build_scorers",
    "check_gates",
    "custom_scorer_names",
    "decide",
    "load_custom_scorer",
    "mean_values",
    "most_changed",
    "paired_comparison",
    "parse_gate",
    "parse_scorer_configs",
    "read_score",
    "score",
]
