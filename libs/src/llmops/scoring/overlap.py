"""Reference-overlap metrics computed by the libraries that define them: sacrebleu (BLEU, chrF) and rouge-score.

Values are the libraries' own, unchanged: BLEU and chrF on sacrebleu's 0-100 scale, ROUGE F1 on 0-1. Per example,
BLEU is sacrebleu's sentence BLEU (``effective_order=True``, as sacrebleu recommends for single sentences); the
corpus value is sacrebleu's corpus score over the examples scored without error, and both signature strings are
recorded. ROUGE's corpus value is the mean of the per-example F1 (rouge-score has no corpus form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, field_validator
from rouge_score.rouge_scorer import RougeScorer as _RougeScorer
from sacrebleu.metrics import BLEU, CHRF

from llmops.scoring.base import CorpusScore, ExampleScore, MetricName, Scorer, ScorerOptions

#: sacrebleu tokenizers that need nothing beyond sacrebleu itself (no MeCab, no SentencePiece model download).
Tokenizer = Literal["13a", "none", "intl", "zh", "char"]


def _needs(reference: str | None) -> str:
    if reference is None:
        raise ValueError("the example has no reference")
    return reference


def _scored(
    outputs: Sequence[str], references: Sequence[str | None], examples: Sequence[ExampleScore]
) -> tuple[list[str], list[str]]:
    """The outputs and references of the examples scored without error (the ones a corpus score covers)."""
    kept = [(o, r) for o, r, e in zip(outputs, references, examples, strict=True) if e.error is None]
    return [o for o, _ in kept], [r for _, r in kept]


class BleuOptions(ScorerOptions):
    """sacrebleu BLEU options (sacrebleu's names and defaults); ``metric`` names the value."""

    type: Literal["bleu"] = "bleu"
    metric: MetricName = "bleu"
    tokenize: Tokenizer = "13a"
    lowercase: bool = False
    smooth_method: Literal["exp", "floor", "add-k", "none"] = "exp"
    smooth_value: float | None = Field(default=None, ge=0, le=1)
    max_ngram_order: int = Field(default=4, ge=1, le=8)


class BleuScorer(Scorer):
    """BLEU by sacrebleu: sentence BLEU per example, corpus BLEU over the corpus, signatures recorded."""

    name = "bleu"
    Options = BleuOptions

    def __init__(self, options: BleuOptions) -> None:
        self.metrics = (options.metric,)
        args = options.model_dump(exclude={"type", "metric"})
        self._corpus = BLEU(**args)
        self._sentence = BLEU(**args, effective_order=True)

    def score_example(self, output: str, reference: str | None, input: str | None) -> Mapping[str, float]:
        return {self.metrics[0]: self._sentence.sentence_score(output, [_needs(reference)]).score}

    def aggregate(
        self, outputs: Sequence[str], references: Sequence[str | None], examples: Sequence[ExampleScore]
    ) -> CorpusScore:
        return _corpus_score(self.metrics[0], self._corpus, self._sentence, outputs, references, examples)


class ChrfOptions(ScorerOptions):
    """sacrebleu chrF options (``word_order=2`` is chrF++); ``metric`` names the value."""

    type: Literal["chrf"] = "chrf"
    metric: MetricName = "chrf"
    char_order: int = Field(default=6, ge=1, le=10)
    word_order: int = Field(default=0, ge=0, le=4)
    beta: int = Field(default=2, ge=1, le=10)
    lowercase: bool = False
    whitespace: bool = False
    eps_smoothing: bool = False


class ChrfScorer(Scorer):
    """chrF (or chrF++) by sacrebleu: sentence chrF per example, corpus chrF over the corpus, signature recorded."""

    name = "chrf"
    Options = ChrfOptions

    def __init__(self, options: ChrfOptions) -> None:
        self.metrics = (options.metric,)
        self._chrf = CHRF(**options.model_dump(exclude={"type", "metric"}))

    def score_example(self, output: str, reference: str | None, input: str | None) -> Mapping[str, float]:
        return {self.metrics[0]: self._chrf.sentence_score(output, [_needs(reference)]).score}

    def aggregate(
        self, outputs: Sequence[str], references: Sequence[str | None], examples: Sequence[ExampleScore]
    ) -> CorpusScore:
        return _corpus_score(self.metrics[0], self._chrf, self._chrf, outputs, references, examples)


def _corpus_score(metric, corpus, sentence, outputs, references, examples) -> CorpusScore:
    hypotheses, kept_references = _scored(outputs, references, examples)
    if not hypotheses:
        return CorpusScore({metric: None})
    value = corpus.corpus_score(hypotheses, [kept_references]).score
    signatures = {metric: str(corpus.get_signature())}
    if sentence is not corpus:
        signatures[f"{metric}.example"] = str(sentence.get_signature())
    return CorpusScore({metric: value}, signatures)


#: rouge-score's type names and the metric names they are stored as.
ROUGE_METRICS = {"rouge1": "rouge_1", "rouge2": "rouge_2", "rougeL": "rouge_l", "rougeLsum": "rouge_lsum"}
RougeType = Literal["rouge1", "rouge2", "rougeL", "rougeLsum"]


class RougeOptions(ScorerOptions):
    """rouge-score options: which ROUGE types (F1 of each is a metric) and whether to Porter-stem tokens.

    rouge-score's tokenizer lowercases and keeps ASCII letters and digits only; ``rougeLsum`` splits summaries into
    sentences on newlines.
    """

    type: Literal["rouge"] = "rouge"
    types: tuple[RougeType, ...] = Field(default=("rouge1", "rouge2", "rougeL", "rougeLsum"), min_length=1)
    use_stemmer: bool = False

    @field_validator("types")
    @classmethod
    def _each_once(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(types)) != len(types):
            raise ValueError("each ROUGE type at most once")
        return types


class RougeScorer(Scorer):
    """ROUGE F1 by rouge-score, per example; the corpus value of each is the mean over the examples."""

    name = "rouge"
    Options = RougeOptions

    def __init__(self, options: RougeOptions) -> None:
        self._types = options.types
        self.metrics = tuple(ROUGE_METRICS[t] for t in options.types)
        self._rouge = _RougeScorer(list(options.types), use_stemmer=options.use_stemmer)

    def score_example(self, output: str, reference: str | None, input: str | None) -> Mapping[str, float]:
        scores = self._rouge.score(_needs(reference), output)  # rouge-score takes the reference first
        return {ROUGE_METRICS[t]: scores[t].fmeasure for t in self._types}
