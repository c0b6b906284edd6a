"""An example custom scorer for the evaluation service, installed as an entry point of group ``llmops.scorers``.

``word_overlap``: the share of the reference's distinct words that the output contains (0.0 to 1.0), optionally
ignoring case. A suite uses it as ``{"type": "custom", "entry_point": "word_overlap", "options": {"ignore_case":
true}}``. See :mod:`llmops.scoring` for the interface.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmops.scoring import Scorer, ScorerOptions


class WordOverlapOptions(ScorerOptions):
    """Options of ``word_overlap``."""

    ignore_case: bool = True


class WordOverlap(Scorer):
    """The share of the reference's distinct words found among the output's words."""

    name = "word_overlap"
    metrics = ("word_overlap",)
    Options = WordOverlapOptions

    def __init__(self, options: WordOverlapOptions) -> None:
        self._fold = str.casefold if options.ignore_case else str

    def score_example(self, output: str, reference: str | None, input: str | None) -> Mapping[str, float]:
        if not reference or not reference.split():
            raise ValueError("word_overlap needs a non-empty reference")
        wanted = set(self._fold(reference).split())
        return {"word_overlap": len(wanted & set(self._fold(output).split())) / len(wanted)}
