"""The redactor: kinds and locale hints in, text with tokens and counts per kind out (see :mod:`llmops.pii`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from llmops.pii.kinds import ALL_KINDS, SUPPORTED_LOCALES, TOKENS, parse_kinds, parse_locales
from llmops.pii.network import IPV6_GATE, find_emails, find_ipv4, find_ipv6
from llmops.pii.numbers import find_codici_fiscali, find_ibans, find_numbers
from llmops.pii.phones import find_phones

# Order in which kinds claim text; checksum-validated kinds go before phones.
_PRIORITY = ("email", "iban", "card", "national_id", "ip", "phone")
_RANK = {kind: rank for rank, kind in enumerate(_PRIORITY)}

Hit = tuple[int, int, str]
Span = tuple[int, int]

# Every digit-based candidate holds a run of seven digits (separators between allowed), a dotted quad or a NINO's six
# digits before its letter, and reaches at most this far around it (an IBAN's letters: "NL91 ABNA " before,
# " MTLC AST0 01S" after; "+44 (0)" before a phone). A run glued to a lower-case word, an underscore, a dash or a dot
# ("ingest-1-123456-0", "build_20240115", "v2.4.24.161") is part of a name or slug and opens no window; upper case
# may lead in (IBANs, NIEs, NINOs). The last branch is the gate of codici fiscali, which hold no long digit run:
# year, month letter, day, place letter ("90R59G"), which every code has but those with omocodia (letters for
# digits, rare). All branches share the leading digit, so the engine skips to digits fast.
_DIGIT_RUN = re.compile(
    r"[0-9](?:(?<![a-z0-9_\-.][0-9])(?:[ ().\-/]{0,3}[0-9]){6,}"
    r"|(?<![\w.][0-9])[0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"
    r"|(?:[0-9]{5}|[0-9] [0-9]{2} [0-9]{2}) ?[A-Z]"
    r"|(?P<fiscale>[0-9][A-Z][0-9][0-9][A-Z]))"
)
_FISCALE = (-1, -1)
_WINDOW_BEFORE, _WINDOW_AFTER = 16, 16


class PiiRedactor:
    """Replaces the PII kinds in ``kinds`` with ``[KIND]`` tokens, reading phone formats and national ids of
    ``locales``; one instance can be reused for any number of rows (and threads: it holds no state per call)."""

    def __init__(self, kinds: Iterable[str] = ALL_KINDS, *, locales: Iterable[str] = SUPPORTED_LOCALES) -> None:
        self.kinds = parse_kinds(kinds)
        self.locales = parse_locales(locales)
        self.regions = tuple(locale[-2:] for locale in self.locales)
        self._countries = frozenset(self.regions)
        self._digit_kinds = bool(self.kinds - {"email"})
        self._numbers = bool(self.kinds & {"card", "national_id"})
        self._codici_fiscali = "national_id" in self.kinds and "IT" in self._countries

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """Return ``text`` with every PII hit replaced by its token, and the number of hits per kind."""
        counts: Counter[str] = Counter()
        return self._redact_counting(text, counts), counts

    def redact_value(self, value: Any) -> tuple[Any, Counter[str]]:
        """Redact every string inside a JSON-like value (dict values, list items); dict keys are left as they are."""
        counts: Counter[str] = Counter()
        return self._walk(value, counts), counts

    def may_hold_pii(self, text: str) -> bool:
        """A cheap test that is true whenever ``text`` holds a hit (and sometimes when not): callers with many short
        texts (a chat row's messages) can test them joined by newlines once and skip the rest when it is false."""
        if "@" in text and "email" in self.kinds:
            return True
        if not self._digit_kinds:
            return False
        if ":" in text and "ip" in self.kinds and IPV6_GATE.search(text) is not None:
            return True
        # JSON may decode to lone surrogates; a non-ASCII character's bytes are "O", as the str pattern sees them
        return _RUN_SHAPE.search(_shape(text.encode("utf-8", "surrogatepass"))) is not None

    def find(self, text: str) -> list[Hit]:
        """The hits in ``text`` as ``(start, end, kind)``, in order, without overlaps."""
        hits = self._candidates(text)
        return _without_overlaps(hits) if hits else hits

    def _walk(self, value: Any, counts: Counter[str]) -> Any:
        if isinstance(value, str):
            return self._redact_counting(value, counts)
        if isinstance(value, dict):
            return {key: self._walk(item, counts) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(item, counts) for item in value]
        return value

    def _redact_counting(self, text: str, counts: Counter[str]) -> str:
        hits = self._candidates(text)
        if not hits:
            return text  # the common case, settled with the fewest calls
        hits = _without_overlaps(hits)
        parts: list[str] = []
        cursor = 0
        for start, end, kind in hits:
            parts += (text[cursor:start], TOKENS[kind])
            cursor = end
            counts[kind] += 1
        parts.append(text[cursor:])
        return "".join(parts)

    def _candidates(self, text: str) -> list[Hit]:
        hits: list[Hit] = []
        kinds = self.kinds
        if "@" in text and "email" in kinds:
            hits += find_emails(text)
        if not self._digit_kinds:
            return hits
        if text.isascii():
            runs: Iterable[re.Match[str]] = _runs_at(text, _shape(text.encode("ascii")))
        elif _RUN_SHAPE.search(_shape(text.encode("utf-8", "surrogatepass"))) is not None:
            runs = _DIGIT_RUN.finditer(text)  # offsets in characters: the regex's own (slower) scan
        else:
            runs = ()
        if not runs and ":" not in text:
            return hits
        windows = _digit_windows(text, runs)
        if windows and windows[-1] is _FISCALE:
            windows.pop()
            if self._codici_fiscali:
                hits += find_codici_fiscali(text)
        for start, end in windows:
            if "iban" in kinds:
                hits += find_ibans(text, start, end)
            if self._numbers:
                hits += (hit for hit in find_numbers(text, start, end, self._countries) if hit[2] in kinds)
            if "ip" in kinds:
                hits += find_ipv4(text, start, end)
            if "phone" in kinds:
                hits += find_phones(text, start, end, self.regions)
        if "ip" in kinds and ":" in text and IPV6_GATE.search(text) is not None:
            hits += find_ipv6(text)
        return hits


def _without_overlaps(hits: list[Hit]) -> list[Hit]:
    taken: list[Hit] = []
    for hit in sorted(hits, key=lambda hit: (_RANK[hit[2]], hit[0], -hit[1])):
        if not any(hit[0] < t_end and t_start < hit[1] for t_start, t_end, _ in taken):
            taken.append(hit)
    taken.sort()
    return taken


# Each byte as _DIGIT_RUN and the character before it see it: a digit (D); one that glues a run to a name before it
# (lower case, "_": B); ".", "-" (P: they glue too, and separate digit groups); space, brackets, "/" (S); upper case
# (U); another (O; bytes of non-ASCII characters too). _RUN_SHAPE is _DIGIT_RUN (and its look-behind) over these
# classes, a little wider: it leads with a literal, so the engine finds its places in C several times faster than it
# scans text for _DIGIT_RUN, and a text with no match (most) costs one translation and one search.
_SHAPE = bytes(
    ord("D")
    if 48 <= c <= 57
    else ord("B")
    if c in b"abcdefghijklmnopqrstuvwxyz_"
    else ord("P")
    if c in b".-"
    else ord("S")
    if c in b" ()/"
    else ord("U")
    if 65 <= c <= 90
    else ord("O")
    for c in range(256)
)
_RUN_SHAPE = re.compile(rb"D(?<=[OSU]D)(?:(?:[PS]{0,3}D){6}|D{0,2}PD{1,3}PD{1,3}PD|(?:D{5}|DSDDSDD)S?U|DUDDU)")


def _shape(data: bytes) -> bytes:
    """``data``'s classes, one byte longer ("O" first, so that shape index i is data index i - 1)."""
    return b"O" + data.translate(_SHAPE)


def _runs_at(text: str, shape: bytes) -> list[re.Match[str]]:
    """The matches of ``_DIGIT_RUN`` in ASCII ``text``, tried only where its shape lets a run start."""
    runs: list[re.Match[str]] = []
    start = _RUN_SHAPE.search(shape)
    while start is not None:
        match = _DIGIT_RUN.match(text, start.start() - 1)
        runs += (match,) if match is not None else ()
        start = _RUN_SHAPE.search(shape, match.end() + 1 if match is not None else start.start() + 1)
    return runs


def _digit_windows(text: str, runs: Iterable[re.Match[str]]) -> list[Span]:
    """Merged spans around each digit run, then ``_FISCALE`` if a codice fiscale may be in the text. A window ends
    at a space so that a match cannot be cut short there; look-behinds see the text before a window's start, so it
    needs no such care."""
    windows: list[Span] = []
    fiscale = False
    for match in runs:
        if match.lastgroup == "fiscale":
            fiscale = True
            continue
        start = max(0, match.start() - _WINDOW_BEFORE)
        end = text.find(" ", match.end() + _WINDOW_AFTER)
        end = len(text) if end < 0 else end
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    if fiscale:
        windows.append(_FISCALE)  # the last entry says a codice fiscale may be in the text
    return windows


@dataclass
class PiiReport:
    """Counts per kind over many values, and how many values held any PII."""

    counts: Counter[str] = field(default_factory=Counter)
    values: int = 0
    values_with_pii: int = 0

    def add(self, counts: Counter[str]) -> None:
        self.values += 1
        if counts:
            self.counts.update(counts)
            self.values_with_pii += 1

    def merge(self, other: PiiReport) -> None:
        self.counts.update(other.counts)
        self.values += other.values
        self.values_with_pii += other.values_with_pii

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(sorted(self.counts.items())),
            "values": self.values,
            "values_with_pii": self.values_with_pii,
        }


_default_redactor: PiiRedactor | None = None


def redact_value(value: Any, redactor: PiiRedactor | None = None) -> tuple[Any, Counter[str]]:
    """Redact every string in a JSON-like value (keys untouched) with ``redactor`` or one for all kinds and
    locales; returns the new value and counts per kind."""
    global _default_redactor
    if redactor is None:
        if _default_redactor is None:
            _default_redactor = PiiRedactor()
        redactor = _default_redactor
    return redactor.redact_value(value)
