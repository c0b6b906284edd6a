"""The anomaly detector's work on a whole batch at once (:meth:`llmops_monitoring.anomalies.Detector.flags_of_table`):
columns read into numpy, texts as UTF-8 bytes and words, and the exact gates that keep the per-text checks (loops,
PII, refusals) to the texts that may hold one. Each gate is a superset of what the per-record check finds, so the
flags of a table are those of its records one by one (``tests/test_flags_table.py``)."""

from __future__ import annotations

import functools
import math
import re
import re._constants as _sre
import re._parser as _sre_parser
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmops.pii import TOKENS

#: The columns flags_of reads, and the order in which it appends the kinds.
READ = ("outcome", "text_mode", "output", "tokens_out", "finish_reason", "latency_ms")
_ORDER = ("empty", "truncated", "repetition", "pii", "refusal", "length_outlier", "latency_outlier", "tokens_outlier")
_NAMES = tuple(tuple(kind for bit, kind in enumerate(_ORDER) if code >> bit & 1) for code in range(1 << len(_ORDER)))
_I64 = np.iinfo(np.int64)
_MIX = np.uint32(0x9E3779B1)
#: Exact literal sets up to this size; past it a pattern's concatenation keeps its most selective part.
_MAX_LITERALS = 256
_LITERAL_CHARS = 12


def strings(column: pa.ChunkedArray) -> pa.Array:
    strings = column.combine_chunks()
    return strings if pa.types.is_string(strings.type) else strings.cast(pa.string())


def bools(values: Any, fill: bool = False) -> np.ndarray:
    return np.asarray(pc.fill_null(values, fill), dtype=bool)


def numbers(values: Any) -> np.ndarray:
    """As numpy (nulls 0: callers mask them with ``is_valid``)."""
    return np.asarray(pc.fill_null(values, 0))


def flag_lists(columns: Sequence[np.ndarray]) -> list[list[str]]:
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    for bit, column in enumerate(columns):
        codes |= column.astype(np.int64) << bit
    return [list(_NAMES[code]) for code in codes.tolist()]


def every_char() -> str:
    """Every code point, once (lone surrogates too): what the exhaustive scans below read (4 MB: not kept)."""
    return np.arange(0x110000, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


@functools.cache
def other_spaces() -> str:
    """An RE2 class of Python's non-ASCII whitespace (where str.split and str.strip cut; re's \\s is the same)."""
    return "[" + "".join(re2_char(c) for c in re.findall(r"\s", every_char()) if not c.isascii()) + "]"


def re2_char(char: str) -> str:
    return f"\\x{{{ord(char):x}}}"


#: The redaction tokens as RE2 literals: a text holds one where _TOKEN_RE finds one.
TOKENS_RE2 = "|".join("".join(map(re2_char, token)) for token in sorted(TOKENS.values()))


def case_variants(chars: frozenset[str]) -> dict[str, str]:
    """Each character and every code point that re.IGNORECASE matches to it, found by matching all of them (a
    class matches what its members match, so one scan finds them all)."""
    found = set(re.findall("[" + "".join(map(re.escape, chars)) + "]", every_char(), re.IGNORECASE))
    return {c: "".join(sorted(v for v in found if re.fullmatch(re.escape(c), v, re.IGNORECASE))) for c in chars}


# Required literals of a regex, after RE2's prefilter and Google Code Search's trigram queries: for each node of the
# parsed pattern either an ``exact`` set (a finite superset of the strings it matches) or a ``within`` set (every
# match holds one of them as a substring), None where unknown. Assertions (\b, lookarounds, anchors) consume
# nothing, so they are the empty string; anything not understood is unknown, which only weakens the result.
_Literals = tuple[frozenset[str] | None, frozenset[str] | None]
_EMPTY: frozenset[str] = frozenset({""})


def required_literals(pattern: str, flags: int) -> frozenset[str] | None:
    """Strings one of which every match of ``pattern`` holds (compared as ``re`` compares characters under
    ``flags``), or None when none are known (or the pattern may match the empty string)."""
    try:
        exact, within = _sequence(_sre_parser.parse(pattern, flags))
    except re.error:
        return None
    found = exact if exact is not None else within
    # A match holding a string holds its prefix too: short prefixes keep the RE2 pattern small
    return frozenset(s[:_LITERAL_CHARS] for s in found) if found and "" not in found else None


def _node(op: Any, av: Any) -> _Literals:
    if op is _sre.LITERAL:
        return frozenset({chr(av)}), None
    if op is _sre.IN:
        return _char_set(av), None
    if op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
        return _EMPTY, None
    if op is _sre.SUBPATTERN:
        return _sequence(av[-1])
    if op is getattr(_sre, "ATOMIC_GROUP", None):
        return _sequence(av)
    if op is _sre.BRANCH:
        return _branch([_sequence(items) for items in av[1]])
    if op is _sre.GROUPREF_EXISTS:
        return _branch([_sequence(av[1]), (_EMPTY, None) if av[2] is None else _sequence(av[2])])
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
        return _repeat(*av)
    return None, None  # one of many characters (ANY, NOT_LITERAL), a back reference: unknown


def _char_set(items: Any) -> frozenset[str] | None:
    chars: set[str] = set()
    for op, av in items:
        if op is _sre.LITERAL:
            chars.add(chr(av))
        elif op is _sre.RANGE and av[1] - av[0] < 16:
            chars.update(map(chr, range(av[0], av[1] + 1)))
        else:  # NEGATE, CATEGORY (\d, \w ...), a wide range
            return None
    return frozenset(chars)


def _product(left: frozenset[str], right: frozenset[str]) -> frozenset[str] | None:
    if len(left) * len(right) > _MAX_LITERALS:
        return None
    return frozenset(a + b for a in left for b in right)


def _better(*sets: frozenset[str] | None) -> frozenset[str] | None:
    """The most selective usable set: longest shortest string, then fewest strings."""
    usable = [s for s in sets if s and "" not in s]
    return max(usable, key=lambda s: (min(map(len, s)), -len(s)), default=None)


def _sequence(items: Any) -> _Literals:
    best, run, exact = None, _EMPTY, True
    for op, av in items:
        node_exact, node_within = _node(op, av)
        joined = None if node_exact is None else _product(run, node_exact)
        if joined is not None:
            run = joined
            continue
        exact, best = False, _better(best, run)
        if node_exact is not None:
            run = node_exact
        else:
            best, run = _better(best, node_within), _EMPTY
    return (run, None) if exact else (None, _better(best, run))


def _branch(alternatives: list[_Literals]) -> _Literals:
    if all(exact is not None for exact, _ in alternatives):
        union = frozenset().union(*(exact for exact, _ in alternatives))
        if len(union) <= _MAX_LITERALS:
            return union, None
    within = [exact if exact is not None else found for exact, found in alternatives]
    if any(not found or "" in found for found in within):
        return None, None
    return None, frozenset().union(*within)


def _repeat(low: int, high: int, item: Any) -> _Literals:
    exact, within = _sequence(item)
    if exact is not None and high <= 4:
        powers = [_EMPTY]
        while len(powers) <= high and powers[-1] is not None:
            powers.append(_product(powers[-1], exact))
        if all(power is not None for power in powers[low:]):
            union = frozenset().union(*powers[low:])
            if len(union) <= _MAX_LITERALS:
                return union, None
    if low == 0:
        return None, None
    if exact is None:
        return None, within  # a match holds one of the item's
    first = exact  # a match starts with `low` of the item's strings
    for _ in range(min(low, 4) - 1):
        first = _product(first, exact) or first
    return None, first


#: Byte classes: Python's ASCII whitespace, and the bytes without which may_hold_pii is false ("@" for emails, ":"
#: for its IPv6 gate, an ASCII digit for every digit-run shape it looks for).
_SPACE, PII_BYTE = 1, 2


@functools.cache
def _byte_classes() -> np.ndarray:
    classes = np.zeros(256, dtype=np.uint8)
    classes[[ord(c) for c in re.findall(r"\s", "".join(map(chr, range(128))))]] |= _SPACE
    classes[list(b"@:0123456789")] |= PII_BYTE
    return classes


@dataclass(frozen=True)
class Bytes:
    """A string column's UTF-8 bytes (row i is ``data[bounds[i]:bounds[i + 1]]``), each with its class."""

    data: np.ndarray
    bounds: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, strings: pa.Array) -> Bytes:
        first = strings.offset
        bounds = np.frombuffer(strings.buffers()[1], dtype=np.int32)[first : first + len(strings) + 1].astype(np.int64)
        base = int(bounds[0])
        bounds -= base
        data = np.frombuffer(strings.buffers()[2] or b"", dtype=np.uint8)[base : base + int(bounds[-1])]
        return cls(data, bounds, np.take(_byte_classes(), data))

    def rows_with(self, byte_class: int) -> np.ndarray:
        """The rows holding a byte of ``byte_class``."""
        found = np.zeros(len(self.bounds) - 1, dtype=bool)
        # the last row starting at or before the byte holds it (rows before it that start there too are empty)
        found[np.searchsorted(self.bounds, np.flatnonzero(self.classes & byte_class), side="right") - 1] = True
        return found

    def words(self) -> Words:
        """``str.split()`` of every row, as byte spans: exact where all of a row's whitespace is ASCII (a byte is
        whitespace or not on its own; a non-ASCII character's bytes are all 0x80 or above)."""
        solid = (self.classes & _SPACE) == 0
        padded = np.zeros(len(solid) + 2, dtype=bool)
        padded[1:-1] = solid
        # A word starts at a non-space byte after a space or where its row starts, and ends likewise
        first, last = self.bounds[:-1], self.bounds[1:] - 1
        first, last = first[first <= last], last[first <= last]  # of rows with bytes
        opens, closes = solid & ~padded[:-2], solid & ~padded[2:]
        opens[first], closes[last] = solid[first], solid[last]
        starts, ends = np.flatnonzero(opens), np.flatnonzero(closes) + 1
        counts = np.diff(np.searchsorted(starts, self.bounds))
        return Words(self.data, starts, ends, np.repeat(np.arange(len(counts), dtype=np.int32), counts), counts)


@dataclass(frozen=True)
class Words:
    """Words as byte spans of ``data``, with each word's row and each row's count."""

    data: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    rows: np.ndarray
    counts: np.ndarray


def repeated_grams(words: Words, gram: int, wanted: np.ndarray) -> np.ndarray:
    """The ``wanted`` rows in which some gram of ``gram`` words may come twice. Equal words have equal fingerprints
    (byte length, first and last byte) and equal grams equal hashes of those, so a row without a repeated hash has
    no repeated gram; a collision only sends a row to Python."""
    found = np.zeros(len(wanted), dtype=bool)
    m = len(words.starts) - gram + 1
    if m <= 0 or not wanted.any():
        return found
    starts, ends = words.starts, words.ends
    prints = (ends - starts).astype(np.uint32) << np.uint32(16)
    prints |= words.data[starts].astype(np.uint32) << np.uint32(8)
    prints |= words.data[ends - 1]
    hashes = np.zeros(m, dtype=np.uint32)
    for k in range(gram):
        hashes ^= prints[k : k + m]
        hashes *= _MIX  # modulo 2**32
    rows = words.rows[:m]
    keep = (rows == words.rows[gram - 1 :]) & wanted[rows]  # the gram's words are all of one wanted row
    hashes, rows = hashes[keep], rows[keep]
    # Equal hashes of a row by their top 16 bits (a radix sort keeps each row's grams in order, so they are
    # neighbours), then by the whole hash among those
    top = (hashes >> np.uint32(16)).astype(np.uint16)
    order = np.argsort(top, kind="stable")
    top, by_top = top[order], rows[order]
    pairs = (top[1:] == top[:-1]) & (by_top[1:] == by_top[:-1])
    pick = np.unique(np.concatenate((order[:-1][pairs], order[1:][pairs])))
    order = np.lexsort((hashes[pick], rows[pick]))
    hashes, rows = hashes[pick][order], rows[pick][order]
    found[rows[1:][(hashes[1:] == hashes[:-1]) & (rows[1:] == rows[:-1])]] = True
    return found


def int_cuts(bounds: list[float | None], *, above: bool) -> tuple[np.ndarray, np.ndarray]:
    """For int64 ``v``: ``v > bound`` is ``always or v > cut`` (``above``), ``v < bound`` is ``always or v < cut``,
    with ``cut`` the bound's floor (ceiling) saturated where no int64 passes."""
    cuts, always = [], []
    never = _I64.max if above else _I64.min
    for bound in bounds:
        if bound is None or math.isnan(bound) or bound == (math.inf if above else -math.inf):
            cut, every = never, False
        elif math.isinf(bound):
            cut, every = never, True
        else:
            cut = math.floor(bound) if above else math.ceil(bound)
            every = cut < _I64.min if above else cut > _I64.max
            cut = min(max(cut, _I64.min), _I64.max)
        cuts.append(cut)
        always.append(every)
    return np.array(cuts, dtype=np.int64), np.array(always, dtype=bool)
