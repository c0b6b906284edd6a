"""What counts as an unusual output, and when a window's share of it is worth a notice: the anomaly detector's
settings, its kinds and its default refusal patterns."""

from __future__ import annotations

import re
from typing import Annotated, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.pii import ALL_KINDS, parse_kinds
from llmops_schemas.events.monitoring import AnomalyKind

KINDS: tuple[str, ...] = get_args(AnomalyKind)

_Q = r"['\u2019]"  # an apostrophe, straight or typographic
_CANNOT = rf"I(?: can(?:not|{_Q}t| not)| won{_Q}t| will not|(?: am|{_Q}m) (?:unable|not able) to)"
DEFAULT_REFUSAL_PATTERNS: tuple[str, ...] = (
    rf"\bI(?:{_Q}m| am) (?:sorry|afraid),? but (?:{_CANNOT}|(?:that|this|it)(?:{_Q}s| is) not something)",
    rf"\b{_CANNOT} (?:help(?! but)|assist|provide|comply|fulfil|do that|answer|share|create|generate|write|engage)",
    r"\bas an AI(?: language model| assistant| model)?(?:,| I\b)",
    rf"\bI(?:{_Q}m| am) not (?:allowed|permitted|authori[sz]ed) to\b",
    r"\bI must (?:respectfully )?(?:decline|refuse)\b",
    rf"\bI apologi[sz]e,? but {_CANNOT}",
    r"\b(?:this|that|your) request (?:violates|goes against|is against)\b",
)

Share = Annotated[float, Field(ge=0, le=1)]
DEFAULT_THRESHOLDS: dict[str, float] = {"empty": 0.05, "truncated": 0.2, "repetition": 0.05, "pii": 0.01}
DEFAULT_THRESHOLDS |= {"refusal": 0.1, "length_outlier": 0.05, "latency_outlier": 0.05, "tokens_outlier": 0.05}


class AnomalySettings(BaseModel):
    """What counts as unusual, and when a window's share of it is worth a notice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Regexes (case-insensitive) of a refusal, searched in the output's first ``refusal_scan_chars`` characters.
    refusal_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSAL_PATTERNS))
    refusal_scan_chars: int = Field(default=300, ge=1, le=5000)
    #: Words in the n-grams the loop finder compares.
    repetition_gram: int = Field(default=4, ge=1, le=16)
    #: A back-to-back loop counts from this many copies of its unit, covering at least this many words.
    repetition_min_repeats: int = Field(default=4, ge=2)
    repetition_min_words: int = Field(default=40, ge=2)
    #: Or: an output of at least this many n-grams with at most this share of them distinct.
    repetition_min_grams: int = Field(default=60, ge=2)
    repetition_max_distinct: float = Field(default=0.4, ge=0, le=1)
    #: The PII kinds looked for (``llmops.pii`` names).
    pii_kinds: list[str] = Field(default_factory=lambda: sorted(ALL_KINDS))
    #: Fence multiplier: a value is an outlier past ``k`` robust standard deviations (on the log scale) from the
    #: reference's median; 3.5 is Iglewicz and Hoaglin's cut-off for the modified z-score.
    outlier_k: float = Field(default=3.5, gt=0)
    #: The least spread (log units, 0.05 = about 5 %) a fence assumes, so a reference of equal values (MAD 0)
    #: does not make every other value an outlier.
    outlier_min_scale: float = Field(default=0.05, gt=0)
    #: A measure's fence needs this many reference values; with fewer it flags nothing.
    reference_min_values: int = Field(default=30, ge=2)
    #: A window's share of each kind past which it is anomalous (missing kinds take the defaults).
    thresholds: dict[AnomalyKind, Share] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    #: No notice for a window with fewer completed records (of the deployment) than this.
    min_records: int = Field(default=20, ge=1)
    #: Seconds after a notice during which the same (deployment, kind) sends no other.
    throttle_seconds: float = Field(default=3600, ge=0)
    #: Request ids of flagged records a notice carries.
    max_examples: int = Field(default=5, ge=0, le=10)

    @field_validator("refusal_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:  # pydantic reports ValueErrors only
                raise ValueError(f"refusal pattern {pattern!r}: {exc}") from None
        return patterns

    @field_validator("pii_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        return sorted(parse_kinds(kinds))

    @field_validator("thresholds")
    @classmethod
    def _all_kinds(cls, thresholds: dict[str, float]) -> dict[str, float]:
        return {**DEFAULT_THRESHOLDS, **thresholds}
