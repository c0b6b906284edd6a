"""Unusual outputs: flags per record, counts per window, and the notices (``monitoring.anomaly.detected``) they give.

Per record (:meth:`Detector.flags_of`), in :data:`KINDS` order:

- ``empty``: a completed request with no tokens out, or a known output that is blank. A ``None`` output with tokens
  out is *unknown* text (hashed, or a producer that sends no text: the schema's ``text_mode`` defaults to
  ``"redacted"``), not an empty one. A tool call (``finish_reason`` ``tool_calls``) has no text by design.
- ``truncated``: ``finish_reason == "length"``.
- ``repetition``: a loop: a unit of words repeated back to back (at least ``repetition_min_repeats`` copies over
  ``repetition_min_words`` words), or few distinct word n-grams over a long output. Text with few spaces (CJK, a
  wall of symbols) is read as characters instead. A long literal of equal values (``[0, 0, 0, ...]``) reads as one.
- ``pii``: the output holds PII by the platform's rules (:class:`llmops.pii.PiiRedactor`), or one of its redaction
  tokens (``[EMAIL]`` ...): producers redact before they publish, so the token is what is left of the PII.
- ``refusal``: one of ``refusal_patterns`` matches in the output's first ``refusal_scan_chars`` characters.
- ``length_outlier`` / ``tokens_outlier``: output characters / tokens out outside the :class:`Reference`'s fences
  (both sides: a one-line answer where pages are usual is as unusual as pages where a line is). Not on ``empty``
  records, which already carry the more precise flag. ``latency_outlier``: above the latency fence (high side only:
  fast is never a problem).

Text-based kinds (repetition, pii, refusal, length) need the text: hashed records get none of them. Failed records
get no flag: their output, tokens and latency are the error's, which the error metrics count.

Per window (:class:`WindowCounter`, :func:`assess`): each (project, deployment) and kind whose flagged share of the
completed records passes its threshold, with at least ``min_records`` records, is one :class:`Notice` with up to
``max_examples`` request ids; :class:`Throttle` drops those sent for the same pair within ``throttle_seconds``.
Hand-written: the loop finder and the refusal patterns (no library covers them); PII is the platform's redactor.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.pii import ALL_KINDS, TOKENS, parse_kinds
from llmops_monitoring.records import NO_DEPLOYMENT
from llmops_schemas.events.monitoring import AnomalyKind, MonitoringAnomalyDetected, Window

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


# --- reference statistics -------------------------------------------------------------------------------------------

# A normal distribution's standard deviation is 1.4826 MADs, and 1 / 1.349 interquartile ranges.
_MAD_SIGMA, _IQR_SIGMA = 1.4826, 1 / 1.349


@dataclass(frozen=True)
class Fence:
    """Values outside ``[low, high]`` are outliers (``low`` ``None``: no lower fence). Built on ``log1p`` of the
    values, where latencies, lengths and token counts (positive, skewed right) are near symmetric: the fences are
    ratios of the median, so a fence suits a 50 ms and a 50 s deployment alike."""

    low: float | None
    high: float

    @classmethod
    def around(cls, center: float, scale: float, k: float, *, lower: bool, min_scale: float) -> Fence:
        """The fence ``center ± k * scale`` (log scale, ``scale`` at least ``min_scale``), back on the value scale."""
        spread = k * max(scale, min_scale)
        return cls(max(0.0, math.expm1(center - spread)) if lower else None, math.expm1(center + spread))

    def outside(self, value: float) -> bool:
        return value > self.high or (self.low is not None and value < self.low)


@dataclass(frozen=True)
class Reference:
    """The fences of one deployment's reference window for the three outlier measures; ``None``: too few values.

    The service should build it with :meth:`from_quantiles` (p25/p50/p75 of the reference window, from the metrics'
    mergeable sketches): no raw values to keep, and its fences
    match :meth:`from_values` on the same data (both estimate the log-scale standard deviation robustly: IQR / 1.349
    and 1.4826 MAD). ``from_values`` is for raw values at hand (tests, a small window)."""

    length: Fence | None = None
    latency: Fence | None = None
    tokens: Fence | None = None

    @classmethod
    def from_values(
        cls,
        *,
        length: Iterable[float] = (),
        latency_ms: Iterable[float] = (),
        tokens_out: Iterable[float] = (),
        settings: AnomalySettings | None = None,
    ) -> Reference:
        """Median and MAD of ``log1p`` of each measure's values."""
        settings = settings or AnomalySettings()

        def fence(values: Iterable[float], lower: bool) -> Fence | None:
            logs = [math.log1p(v) for v in values if v is not None and v >= 0]
            if len(logs) < settings.reference_min_values:
                return None
            center = statistics.median(logs)
            mad = statistics.median(abs(v - center) for v in logs)
            return Fence.around(
                center, _MAD_SIGMA * mad, settings.outlier_k, lower=lower, min_scale=settings.outlier_min_scale
            )

        return cls(fence(length, True), fence(latency_ms, False), fence(tokens_out, True))

    @classmethod
    def from_quantiles(
        cls,
        *,
        length: Sequence[float] | None = None,
        latency_ms: Sequence[float] | None = None,
        tokens_out: Sequence[float] | None = None,
        counts: Mapping[str, int] | None = None,
        settings: AnomalySettings | None = None,
    ) -> Reference:
        """Each measure's ``(p25, p50, p75)``; ``counts`` (by ``length``/``latency_ms``/``tokens_out``), when
        given, drops the measures with fewer than ``reference_min_values`` values behind them."""
        settings = settings or AnomalySettings()

        def fence(name: str, quartiles: Sequence[float] | None, lower: bool) -> Fence | None:
            if quartiles is None or (counts is not None and counts.get(name, 0) < settings.reference_min_values):
                return None
            q1, q2, q3 = (math.log1p(max(0.0, q)) for q in quartiles)
            if not q1 <= q2 <= q3:
                raise ValueError(f"{name}: quartiles out of order: {quartiles}")
            return Fence.around(
                q2, _IQR_SIGMA * (q3 - q1), settings.outlier_k, lower=lower, min_scale=settings.outlier_min_scale
            )

        return cls(
            fence("length", length, True), fence("latency_ms", latency_ms, False), fence("tokens_out", tokens_out, True)
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], settings: AnomalySettings | None = None) -> Reference:
        """From a reference window's records (completed ones; lengths of known, non-empty outputs only)."""
        completed = [record for record in records if record.get("outcome") == "completed"]
        return cls.from_values(
            length=[len(text) for text in map(_text, completed) if text],
            latency_ms=[record["latency_ms"] for record in completed],
            tokens_out=[record["tokens_out"] for record in completed if record.get("tokens_out")],
            settings=settings,
        )


# --- per record -----------------------------------------------------------------------------------------------------

_NO_TEXT_FINISH = frozenset({"tool_calls", "function_call"})
_TOKEN_RE = re.compile("|".join(re.escape(token) for token in sorted(TOKENS.values())))


def _text(record: Mapping[str, Any]) -> str | None:
    """The output's text when the record carries it."""
    output = record.get("output")
    return output if isinstance(output, str) and record.get("text_mode") != "hashed" else None


class Detector:
    """Flags one record at a time; build once (the PII redactor loads phone metadata) and reuse."""

    def __init__(self, settings: AnomalySettings | None = None) -> None:
        from llmops.pii import PiiRedactor

        self.settings = settings or AnomalySettings()
        self.redactor = PiiRedactor(self.settings.pii_kinds)
        self._refusal = re.compile("|".join(f"(?:{p})" for p in self.settings.refusal_patterns) or r"(?!)", re.I)

    def flags_of(self, record: Mapping[str, Any], reference: Reference | None = None) -> list[str]:
        """The kinds (in :data:`KINDS` order) ``record`` shows, against ``reference`` for the outliers."""
        if record.get("outcome") != "completed":
            return []
        flags: list[str] = []
        text = _text(record)
        tokens_out = record.get("tokens_out")
        empty = record.get("finish_reason") not in _NO_TEXT_FINISH and (
            tokens_out == 0 or (text is not None and not text.strip())
        )
        if empty:
            flags.append("empty")
        if record.get("finish_reason") == "length":
            flags.append("truncated")
        if text and not empty:
            if self.loops(text):
                flags.append("repetition")
            if self.holds_pii(text):
                flags.append("pii")
            if self._refusal.search(text, 0, self.settings.refusal_scan_chars):
                flags.append("refusal")
        if reference is not None:
            if text is not None and not empty and _outside(reference.length, len(text)):
                flags.append("length_outlier")
            if _outside(reference.latency, record.get("latency_ms")):
                flags.append("latency_outlier")
            if not empty and _outside(reference.tokens, tokens_out):
                flags.append("tokens_outlier")
        return flags

    def holds_pii(self, text: str) -> bool:
        """PII the producer left in, or a token where it redacted some."""
        if "[" in text and _TOKEN_RE.search(text):
            return True
        return self.redactor.may_hold_pii(text) and bool(self.redactor.find(text))

    def loops(self, text: str) -> bool:
        """A loop in ``text``: by words, or by characters when it has few spaces (CJK, symbols)."""
        s = self.settings
        words = text.split()
        if len(text) >= 200 and len(words) * 15 < len(text):
            # Few spaces: characters as the units, grams of 2 * gram characters, 5 characters a word.
            return _loops(text, 2 * s.repetition_gram, s.repetition_min_repeats, 5 * s.repetition_min_words, 0, 1)
        gram, repeats = s.repetition_gram, s.repetition_min_repeats
        return _loops(words, gram, repeats, s.repetition_min_words, s.repetition_min_grams, s.repetition_max_distinct)


def _outside(fence: Fence | None, value: float | None) -> bool:
    return fence is not None and value is not None and fence.outside(value)


def _loops(
    units: Sequence[str], gram: int, min_repeats: int, min_span: int, min_grams: int, max_distinct: float
) -> bool:
    """Whether ``units`` hold a back-to-back loop, or (from ``min_grams`` grams) too few distinct grams.

    One pass: each gram's distance to its previous occurrence is the period of a loop when it stays the same over
    consecutive grams; ``run`` grams in a row at period ``p`` mean ``p + run + gram - 1`` units repeat with period
    ``p``. O(n), no back-tracking, so a 32,000-character output costs milliseconds."""
    n = len(units) - gram + 1
    if n <= 0:
        return False
    distinct = len(set(zip(*(units[i:] for i in range(gram)), strict=False)))
    if distinct == n:  # no gram comes twice, so no loop: the common case, told without the pass below
        return n >= min_grams > 0 and distinct <= max_distinct * n
    grams = zip(*(units[i:] for i in range(gram)), strict=False)
    last: dict[tuple[str, ...], int] = {}
    period = run = 0
    for i, key in enumerate(grams):
        previous = last.get(key)
        last[key] = i
        distance = 0 if previous is None else i - previous
        if distance and distance == period:
            run += 1
            span = period + run + gram - 1
            if span >= min_span and span >= min_repeats * period:
                return True
        else:
            period, run = distance, 1 if distance else 0
    return n >= min_grams > 0 and len(last) <= max_distinct * n


# --- per window -----------------------------------------------------------------------------------------------------


class Group(NamedTuple):
    """Whose records: a project's deployment (``records.NO_DEPLOYMENT`` for records that name none)."""

    project: str
    deployment_id: str


@dataclass(frozen=True)
class Notice:
    """One kind past its threshold for one group in one window."""

    group: Group
    kind: str
    flagged: int
    records: int
    threshold: float
    examples: tuple[str, ...] = ()
    route: str | None = None
    model_version_id: str | None = None

    @property
    def share(self) -> float:
        return self.flagged / self.records

    @property
    def key(self) -> tuple[Group, str]:
        return self.group, self.kind

    def event(self, window: Window) -> MonitoringAnomalyDetected:
        """The ``monitoring.anomaly.detected`` payload (subject: the deployment id)."""
        return MonitoringAnomalyDetected(
            project=self.group.project,
            deployment_id=self.group.deployment_id,
            route=self.route,
            model_version_id=self.model_version_id,
            kind=self.kind,
            window=window,
            flagged=self.flagged,
            records=self.records,
            share=self.share,
            threshold=self.threshold,
            examples=list(self.examples),
        )


def assess(
    window_counts: Mapping[tuple[Group, str], int],
    records_in_window: Mapping[Group, int],
    settings: AnomalySettings,
    *,
    examples: Mapping[tuple[Group, str], Sequence[str]] | None = None,
    labels: Mapping[Group, tuple[str | None, str | None]] | None = None,
) -> list[Notice]:
    """The notices of one window: flagged counts per (group, kind) and completed records per group in; each kind
    whose share is past (``>``) its threshold in a group of at least ``min_records`` records out, sorted.
    ``labels`` gives a group's ``(route, model_version_id)`` for the event."""
    notices = []
    for (group, kind), flagged in window_counts.items():
        records = records_in_window.get(group, 0)
        threshold = settings.thresholds[kind]
        if flagged <= 0 or records < settings.min_records or flagged / records <= threshold:
            continue
        kept = tuple((examples or {}).get((group, kind), ()))[: settings.max_examples]
        route, model_version_id = (labels or {}).get(group, (None, None))
        notices.append(Notice(group, kind, min(flagged, records), records, threshold, kept, route, model_version_id))
    return sorted(notices, key=lambda n: (n.group, KINDS.index(n.kind)))


_MIXED = object()


@dataclass
class WindowCounter:
    """Counts one window's records as they are flagged: completed records per group, flagged per (group, kind),
    the first request ids of each, and the route and model version the group's records agree on (else ``None``)."""

    max_examples: int = 10  # the event's most; assess keeps settings.max_examples of them
    counts: Counter[tuple[Group, str]] = field(default_factory=Counter)
    records: Counter[Group] = field(default_factory=Counter)
    examples: dict[tuple[Group, str], list[str]] = field(default_factory=dict)
    _labels: dict[Group, list[Any]] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any], flags: Iterable[str] | None = None) -> None:
        """Count ``record`` with ``flags`` (default: its ``flags`` column); failed records are not counted."""
        if record.get("outcome") != "completed":
            return
        group = Group(record["project"], record.get("deployment_id") or NO_DEPLOYMENT)
        self.records[group] += 1
        labels = self._labels.setdefault(group, [record.get("route"), record.get("model_version_id")])
        for i, name in enumerate(("route", "model_version_id")):
            if labels[i] is not _MIXED and labels[i] != record.get(name):
                labels[i] = _MIXED
        for kind in (record.get("flags") or ()) if flags is None else flags:
            self.counts[group, kind] += 1
            kept = self.examples.setdefault((group, kind), [])
            if len(kept) < self.max_examples and record.get("request_id"):
                kept.append(record["request_id"])

    def labels(self) -> dict[Group, tuple[str | None, str | None]]:
        return {g: tuple(None if v is _MIXED else v for v in values) for g, values in self._labels.items()}

    def notices(self, settings: AnomalySettings) -> list[Notice]:
        return assess(self.counts, self.records, settings, examples=self.examples, labels=self.labels())


@dataclass(frozen=True)
class Throttle:
    """At most one notice per (group, kind) every ``seconds``. Pure: the service keeps the last-sent times, and
    passes the window's end as ``now`` so that a replay decides the same."""

    seconds: float

    def allows(self, last_sent: datetime | None, now: datetime) -> bool:
        return last_sent is None or now - last_sent >= timedelta(seconds=self.seconds)

    def select(
        self, notices: Iterable[Notice], last_sent: Mapping[tuple[Group, str], datetime], now: datetime
    ) -> list[Notice]:
        """The notices that may be sent at ``now``."""
        return [notice for notice in notices if self.allows(last_sent.get(notice.key), now)]
