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

A batch as one ``pyarrow.Table`` (:meth:`Detector.flags_of_table`) gets the same flags, row for row: the cheap checks
as column operations, the costly ones (loops, PII, refusals) in Python only on the texts their exact prefilters keep.

Per window (:class:`WindowCounter`, :func:`assess`): each (project, deployment) and kind whose flagged share of the
completed records passes its threshold, with at least ``min_records`` records, is one :class:`Notice` with up to
``max_examples`` request ids; :class:`Throttle` drops those sent for the same pair within ``throttle_seconds``.
Hand-written: the loop finder and the refusal patterns (no library covers them); PII is the platform's redactor.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmops.pii import TOKENS
from llmops_monitoring import flag_columns as fcol
from llmops_monitoring.anomaly_settings import AnomalySettings
from llmops_monitoring.outliers import Fence, Reference, output_text

# --- per record -----------------------------------------------------------------------------------------------------

_NO_TEXT_FINISH = frozenset({"tool_calls", "function_call"})
_TOKEN_RE = re.compile("|".join(re.escape(token) for token in sorted(TOKENS.values())))


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
        text = output_text(record)
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

    def flags_of_table(
        self, table: pa.Table, references: Mapping[tuple[str, str], Reference | None]
    ) -> list[list[str]]:
        """:meth:`flags_of` of every row of ``table`` (the record store's columns but ``flags``), each against
        ``references[(project, deployment_id)]`` (none for a row without a deployment, or a pair not in it)."""
        if table.num_rows == 0:
            return []
        output = fcol.strings(table.column("output"))
        finish = table.column("finish_reason")
        completed = fcol.bools(pc.equal(table.column("outcome"), "completed"))
        has_text = (
            completed
            & fcol.bools(output.is_valid())
            & fcol.bools(pc.not_equal(table.column("text_mode"), "hashed"), True)
        )
        text_bytes = fcol.Bytes.of(output)
        words = text_bytes.words()
        # Texts with whitespace beyond ASCII (rare) are left to flags_of: the byte-level word split is exact without it
        irregular = np.flatnonzero(has_text & ~fcol.bools(pc.string_is_ascii(output), True))
        irregular = irregular[fcol.bools(pc.match_substring_regex(output.take(irregular), fcol.other_spaces()))]
        chars = fcol.numbers(pc.utf8_length(output))  # code points, as len() counts
        tokens, tokens_known = (
            fcol.numbers(table.column("tokens_out")),
            fcol.bools(table.column("tokens_out").is_valid()),
        )
        blank = words.counts == 0  # not text.strip(): split() and strip() cut at the same characters
        empty = completed & ~fcol.bools(pc.is_in(finish, value_set=pa.array(sorted(_NO_TEXT_FINISH))))
        empty &= (tokens_known & (tokens == 0)) | (has_text & blank)
        read = has_text & (chars > 0) & ~empty  # flags_of's `text and not empty`
        read[irregular] = False
        repetition, ask_loops = self._loops_table(words, chars, read)
        pii, ask_pii = self._pii_table(output, text_bytes, read)
        refusal, ask_refusal = self._refusal_table(output, read)
        asked = np.flatnonzero(ask_loops | ask_pii | ask_refusal)
        for row, text in zip(asked.tolist(), output.take(pa.array(asked)).to_pylist(), strict=True):
            if ask_loops[row]:
                repetition[row] = self.loops(text)
            if ask_pii[row]:
                pii[row] = self.holds_pii(text)
            if ask_refusal[row]:
                refusal[row] = self._refusal.search(text, 0, self.settings.refusal_scan_chars) is not None
        groups, refs = _references_of(table, references)
        fences = [[None if r is None else getattr(r, name) for r in refs] for name in ("length", "latency", "tokens")]
        latency = table.column("latency_ms")
        columns = (
            empty,
            completed & fcol.bools(pc.equal(finish, "length")),
            repetition,
            pii,
            refusal,
            has_text & ~empty & _outside_fences(fences[0], groups, chars, has_text),
            completed & _outside_fences(fences[1], groups, fcol.numbers(latency), fcol.bools(latency.is_valid())),
            completed & ~empty & _outside_fences(fences[2], groups, tokens, tokens_known),
        )
        flags = fcol.flag_lists(columns)
        records = table.select(list(fcol.READ)).set_column(fcol.READ.index("output"), "output", output)
        for row, record in zip(irregular.tolist(), records.take(irregular).to_pylist(), strict=True):
            flags[row] = self.flags_of(record, refs[groups[row]])
        return flags

    def _loops_table(self, words: fcol.Words, chars: np.ndarray, read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`loops` of the ``read`` rows: (those known to loop, those Python has to look at)."""
        s = self.settings
        by_chars = read & (chars >= 200) & (words.counts * 15 < chars)
        by_words = read & ~by_chars
        n = words.counts - s.repetition_gram + 1
        # What _loops answers when no gram comes twice; when it is True a repeated gram cannot make it False (the
        # distinct share only drops), when it is False only a repeated gram can make it True: a loop of at least
        # repetition_min_words words, or at least repetition_min_grams grams with few distinct.
        all_distinct = (
            (n >= s.repetition_min_grams) & (s.repetition_min_grams > 0) & (n <= s.repetition_max_distinct * n)
        )
        reach = (n > 0) & ((words.counts >= s.repetition_min_words) | (n >= s.repetition_min_grams))
        maybe = by_words & ~all_distinct & reach
        maybe &= fcol.repeated_grams(words, s.repetition_gram, maybe)
        # By characters a loop covers at least 5 * repetition_min_words of them (and no distinct-share rule applies)
        maybe |= by_chars & (chars >= 5 * s.repetition_min_words)
        return by_words & all_distinct, maybe

    def _pii_table(self, output: pa.Array, text_bytes: fcol.Bytes, read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`holds_pii` of the ``read`` rows: (those holding a redaction token, those Python has to look at).
        A token is a plain substring (what _TOKEN_RE finds); without one, PII needs ``may_hold_pii``, which is true
        only on texts with a byte of ``flag_columns.PII_BYTE``."""
        token = fcol.bools(pc.match_substring_regex(output, fcol.TOKENS_RE2))
        return read & token, read & ~token & text_bytes.rows_with(fcol.PII_BYTE)

    def _refusal_table(self, output: pa.Array, read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The refusal search of the ``read`` rows: (none known, those Python has to look at)."""
        known = np.zeros(len(read), dtype=bool)
        if not self.settings.refusal_patterns:  # the regex is (?!), which matches nothing
            return known, known
        gate = self._refusal_gate
        if gate is None:
            return known, read
        start = pc.utf8_slice_codeunits(output, 0, self.settings.refusal_scan_chars)  # code points, as search's endpos
        return known, read & fcol.bools(pc.match_substring_regex(start, gate))

    @functools.cached_property
    def _refusal_gate(self) -> str | None:
        """An RE2 pattern that finds every text the refusal regex finds (and some others), or ``None`` where the
        regex is beyond :func:`fcol.required_literals`.

        Every match of the regex holds one of its required literals, character by character as re.IGNORECASE
        compares them; each character becomes the class of every code point that Python's re matches to it (found
        by trying them all: U+0130 and U+0131 for i, U+017F for s, the Kelvin sign for k ...), so the RE2 pattern needs
        no case folding of its own (RE2's lacks U+0130 and U+0131) and no \\b (RE2's is ASCII-only)."""
        literals = fcol.required_literals(self._refusal.pattern, self._refusal.flags)
        if literals is None:
            return None
        variants = fcol.case_variants(frozenset("".join(literals)))
        alternatives = []
        for literal in sorted(literals):
            classes = [
                "".join(fcol.re2_char(v) for v in variants[c] if not 0xD800 <= ord(v) <= 0xDFFF) for c in literal
            ]
            if all(classes):  # else it needs a lone surrogate, which no Arrow string holds
                alternatives.append("".join(f"[{c}]" for c in classes))
        pattern = "|".join(alternatives)
        try:
            pc.match_substring_regex(pa.array([""]), pattern)
        except pa.ArrowInvalid:  # too large for RE2's memory budget, say
            return None
        return pattern if alternatives else None

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


def _references_of(
    table: pa.Table, references: Mapping[tuple[str, str], Reference | None]
) -> tuple[np.ndarray, list[Reference | None]]:
    """Each row's (project, deployment) as an index into the references of the table's pairs (looked up once)."""
    codes, values = [], []
    for name in ("project", "deployment_id"):
        encoded = pc.dictionary_encode(table.column(name).combine_chunks())
        codes.append(np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64) + 1)
        values.append([None, *encoded.dictionary.to_pylist()])
    pairs, groups = np.unique(codes[0] * len(values[1]) + codes[1], return_inverse=True)
    refs = []
    for pair in pairs.tolist():
        project, deployment = values[0][pair // len(values[1])], values[1][pair % len(values[1])]
        refs.append(None if deployment is None else references.get((project, deployment)))
    return groups.reshape(-1), refs


def _outside_fences(
    fences: list[Fence | None], groups: np.ndarray, values: np.ndarray, known: np.ndarray
) -> np.ndarray:
    """Each known value against its group's fence, as :meth:`Fence.outside` compares (an int with a float exactly)."""
    if values.dtype.kind == "f":
        high = np.array([np.nan if f is None else f.high for f in fences], dtype=np.float64)
        low = np.array([np.nan if f is None or f.low is None else f.low for f in fences], dtype=np.float64)
        return known & ((values > high[groups]) | (values < low[groups]))
    high_cut, above_all = fcol.int_cuts([None if f is None else f.high for f in fences], above=True)
    low_cut, below_all = fcol.int_cuts([None if f is None else f.low for f in fences], above=False)
    values = values.astype(np.int64)
    above = above_all[groups] | (values > high_cut[groups])
    return known & (above | below_all[groups] | (values < low_cut[groups]))
