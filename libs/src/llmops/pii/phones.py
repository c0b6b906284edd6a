"""Phone numbers, decided by ``phonenumbers`` (see :mod:`llmops.pii` for what counts).

``phonenumbers.PhoneNumberMatcher`` is not run over the text: one pass per hinted region costs 50 to 200 µs per
sentence, seven times over, and its leniencies either demand assigned ranges (``VALID``: most numbers people make
up for examples fail) or take any digit run of a possible length. Candidates come from one regex instead, and
``phonenumbers.parse`` with each region decides, once per distinct candidate (cached).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberFormat, ValidationResult

Hit = tuple[int, int, str]
Span = tuple[int, int]

_PHONE = re.compile(
    r"(?<![\w+/.\-#$€£%])(?<!\d[ \-.])"
    r"(?:\+ ?|\(\+?)?\d[\d ().\-/]{4,24}\d\)?"
    r"(?:[ ]?(?:x|ext\.?|extn\.?|#)[ ]?\d{1,6})?"
    r"(?![\w]|[.\-/]\d)"
)
_EXTENSION = re.compile(r"[ ]?(?:x|ext\.?|extn\.?|#)[ ]?\d{1,6}$")
_DIGITS = re.compile(r"\d+")
_TOKEN = re.compile(r"\+?\(?\+?\d+\)?")
_SEPARATORS = re.compile(r"[.\-/]")
_DATE_OR_TIME = re.compile(r"\d{1,4}([./\-])\d{1,2}\1\d{1,4}|\d{1,2}[:.]\d{2}(?:[:.]\d{2})?")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_TRUNK_ZERO = re.compile(r"\(0\)")
# A national number in a range not assigned is taken only in a tidy layout: the area code (in brackets or not) and
# groups apart by one space, dash or slash.
_TRUNK_LAYOUT = re.compile(r"(?:\(0\d+\) ?|0\d*)(?:[ \-/]?\d+)*")
# Words that announce a phone number, in the supported languages; looked for just before a candidate.
_PHONE_WORDS = re.compile(
    r"\b(?:phone|telephone|tel|tél|tele?fon[eo]?|telefoon|teléfono|téléphone|mobile?|mob|cell(?:ulare|phone)?|call|calls|"
    r"ring|text|sms|whatsapp|fax|hotline|voicemail|reach|dial|handy(?:nummer)?|mobil|rückruf|anrufen|"
    r"ruf\w*|kontakt\w*|erreichbar|portable|appel\w*|joindre|chiam\w*|recapito|contatt\w*|móvil|movil|llam\w*|contact\w*|"
    r"mobiele?|bel|bellen|bereiken)\b",
    re.IGNORECASE,
)
_WORDS_BEFORE = 60
# "number" alone ("the number on file is ...") announces a phone only if no other kind of number is named with it.
_NUMBER_WORD = re.compile(r"\b(?:numbers?|nummer|numéro|numero|número)\b", re.IGNORECASE)
_OTHER_NUMBER_WORDS = re.compile(
    r"\b(?:account|card|order|ticket|invoice|ref|reference|customer|client|member|tracking|serial|policy|case|id|"
    r"tax|vat|ssn|insurance|bsn|iban|konto\w*|kunden\w*|rechnung\w*|auftrag\w*|bestell\w*|compte|commande|"
    r"facture|conto|ordine|fattura|cuenta|pedido|factura|rekening|bestelling|factuur|klant\w*)\b",
    re.IGNORECASE,
)
_NUMBER_WORD_BEFORE = 30


def find_phones(text: str, start: int, end: int, regions: tuple[str, ...]) -> Iterator[Hit]:
    for match in _PHONE.finditer(text, start, end):
        if _DATE_OR_TIME.fullmatch(match[0]):
            continue  # the common case, settled before anything else
        named = _Named(text, match.start())
        kind = _phone_kind(match[0], regions)
        if _accept(kind, named, match[0], regions) or (
            kind != _NOT_PHONE and _numbered(text, match.start()) and _national_number(match[0], regions)
        ):
            yield (*match.span(), "phone")
            continue
        # A candidate may run into a neighbouring number ("room 12 415-555-2671"): look for a phone in whole
        # tokens of it, but not in runs of space-separated groups (references, cards: "0751 5919 8798 3028").
        offset = match.start()
        tokens = [(m.start() + offset, m.end() + offset) for m in _TOKEN.finditer(match[0])]
        for span in _phones_in_tokens(text, tokens, regions, named, whole_tried=True):
            yield (*span, "phone")


class _Named:
    """Whether a phone word stands before the candidate at ``at``; looked up once, and only if asked."""

    __slots__ = ("_answer", "at", "text")

    def __init__(self, text: str, at: int) -> None:
        self.text, self.at, self._answer = text, at, None

    def __bool__(self) -> bool:
        if self._answer is None:
            self._answer = _PHONE_WORDS.search(self.text, max(0, self.at - _WORDS_BEFORE), self.at) is not None
        return self._answer


def _numbered(text: str, at: int) -> bool:
    start = max(0, at - _NUMBER_WORD_BEFORE)
    return _NUMBER_WORD.search(text, start, at) is not None and _OTHER_NUMBER_WORDS.search(text, start, at) is None


def _accept(kind: int, named: _Named | bool, candidate: str, regions: tuple[str, ...]) -> bool:
    if kind == _PHONE_ALWAYS:
        return True
    if kind == _NOT_PHONE or not named:
        return False
    return kind == _PHONE_IF_NAMED or _possible_in_a_region(candidate, regions)


def _phones_in_tokens(
    text: str, tokens: list[Span], regions: tuple[str, ...], named: _Named | bool, whole_tried: bool = False
) -> Iterator[Span]:
    last = len(tokens) - 1
    # Tokens with a space (or ". ", ", ") between them belong to different chunks: "12", "415-555-2671".
    apart = [any(ch.isspace() for ch in text[tokens[i][1] : tokens[i + 1][0]]) for i in range(last)]
    firsts = [i for i in range(last + 1) if i == 0 or apart[i - 1]]
    lasts = [i for i in range(last + 1) if i == last or apart[i]]
    runs = [(i, j) for i in firsts for j in lasts if i <= j and not (whole_tried and (i, j) == (0, last))]
    for first, final in sorted(runs, key=lambda run: run[0] - run[1]):
        start, end = tokens[first][0], tokens[final][1]
        if _tail_of_digit_groups(text, tokens, apart, first, final):
            continue
        if _accept(_phone_kind(text[start:end], regions), first == 0 and named, text[start:end], regions):
            yield from _phones_in_tokens(text, tokens[:first], regions, named)
            yield start, end
            yield from _phones_in_tokens(text, tokens[final + 1 :], regions, False)
            return


def _tail_of_digit_groups(text: str, tokens: list[Span], apart: list[bool], first: int, final: int) -> bool:
    """True if the run is plain space-separated digit groups beside another plain group: a piece of a reference
    or card number ("0751 5919 8798 3028"), not a phone."""
    if not all(apart[first:final]) or any(not text[s:e].isdigit() for s, e in tokens[first : final + 1]):
        return False
    before = first > 0 and (first == 1 or apart[first - 2]) and text[slice(*tokens[first - 1])].isdigit()
    after = final < len(tokens) - 1 and (final + 1 == len(tokens) - 1 or apart[final + 1])
    return before or (after and text[slice(*tokens[final + 1])].isdigit())


# What a candidate is: no phone, a phone after a phone word (if possible in a region: decided only then), a phone.
_NOT_PHONE, _PHONE_IF_NAMED, _PHONE_IF_NAMED_AND_POSSIBLE, _PHONE_ALWAYS = 0, 1, 2, 3


@lru_cache(maxsize=65536)
def _phone_kind(candidate: str, regions: tuple[str, ...]) -> int:
    main = _main_part(candidate)
    digits = "".join(_DIGITS.findall(main))
    if not 7 <= len(digits) <= 15 or not _plausible_layout(main) or _DATE_OR_TIME.fullmatch(main):
        return _NOT_PHONE
    bare = main.lstrip("(")
    if bare.startswith(("+", "00")):
        international = "+" + _TRUNK_ZERO.sub("", bare[1:] if bare[0] == "+" else bare[2:], count=1)
        number = _parse(international, None)
        if number is not None and _possible(number):
            return _PHONE_ALWAYS
        if bare[0] == "+":
            return _NOT_PHONE
    if len(digits) < 8:
        return _NOT_PHONE  # a local number without its area code
    # After a phone word, a trunk-prefixed national layout is a phone even where no region knows the range.
    trunk_layout = bare.startswith("0") and len(digits) <= 13
    if _DOTTED_QUAD.fullmatch(main) is not None or len(_TOKEN.findall(main)) == 1:
        # a bad IP address, a bare digit run: phones only after a phone word
        return _PHONE_IF_NAMED if trunk_layout else _PHONE_IF_NAMED_AND_POSSIBLE
    kind = _PHONE_IF_NAMED if trunk_layout else _NOT_PHONE
    for region in regions:
        if not _length_fits(digits, region):
            continue
        number = _parse(main, region)
        if number is None or not _possible(number):
            continue
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        if _grouped_as_national(main, national) and (
            _valid_or_nanp(number) or (_TRUNK_LAYOUT.fullmatch(main) is not None and _trunk_formatted(national, region))
        ):
            return _PHONE_ALWAYS
        kind = _PHONE_IF_NAMED
    return kind


@lru_cache(maxsize=4096)
def _possible_in_a_region(candidate: str, regions: tuple[str, ...]) -> bool:
    main = _main_part(candidate)
    digits = "".join(_DIGITS.findall(main))
    for region in regions:
        if _length_fits(digits, region):
            number = _parse(main, region)
            if number is not None and _possible(number):
                return True
    return False


@lru_cache(maxsize=4096)
def _national_number(candidate: str, regions: tuple[str, ...]) -> bool:
    """Whether a bare digit run is a whole national number of a hinted region, trunk prefix included, in a range
    the region uses (or its trunk prefix and a possible length, as in ``_phone_kind``)."""
    if not candidate.isdigit():
        return False
    for region in regions:
        if not _length_fits(candidate, region):
            continue
        number = _parse(candidate, region)
        if number is None or not _possible(number):
            continue
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        if "".join(_DIGITS.findall(national)) == candidate and (
            _valid_or_nanp(number) or _trunk_formatted(national, region)
        ):
            return True
    return False


def _main_part(candidate: str) -> str:
    """The number without its extension."""
    extension = _EXTENSION.search(candidate)
    return candidate[: extension.start()] if extension else candidate


@lru_cache(maxsize=64)
def _region_lengths(region: str) -> tuple[str, frozenset[int]]:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return metadata.national_prefix or "", frozenset(metadata.general_desc.possible_length)


def _length_fits(digits: str, region: str) -> bool:
    """Whether the digits, less the region's trunk prefix, have a length the region's numbers have (from its
    metadata): most regions are settled here, without parsing."""
    trunk, lengths = _region_lengths(region)
    if trunk and digits.startswith(trunk):
        return len(digits) - len(trunk) in lengths or len(digits) in lengths
    return len(digits) in lengths


def _trunk_formatted(national: str, region: str) -> bool:
    """Whether ``national`` (a number in ``region``'s national format) was written by one of the region's patterns,
    with its trunk prefix: with a possible length and the area code grouped as that pattern groups it, the number is
    written the way that country writes its phones, even in a range not assigned (Ofcom's drama ranges
    ``0115 496 0xxx``, ``01632 960xxx``, which tests and fiction use). A number no pattern fits is formatted as one
    bare run, without the prefix."""
    trunk = _region_lengths(region)[0]
    return bool(trunk) and national.startswith(trunk) and not national.isdigit()


def _valid_or_nanp(number: phonenumbers.PhoneNumber) -> bool:
    # NANP numbers follow one plan (area and exchange codes from 2 to 9), so a possible one grouped 3-3-4 is taken
    # even in ranges not yet assigned; elsewhere the range must exist.
    return number.country_code == 1 or phonenumbers.is_valid_number(number)


def _possible(number: phonenumbers.PhoneNumber) -> bool:
    # IS_POSSIBLE_LOCAL_ONLY (a number without its area code) is no phone number on its own
    return phonenumbers.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE


def _plausible_layout(candidate: str) -> bool:
    groups = _TOKEN.findall(candidate)
    # Brackets hold an area code or the "(0)" after a country code, never a later group ("417-420 (2003)").
    if any("(" in group for group in groups[2:]) or (
        len(groups) > 1 and "(" in groups[1] and not groups[0].startswith(("+", "00", "1"))
    ):
        return False
    separators = set(_SEPARATORS.findall(candidate))
    # One kind of separator besides spaces ("+1 415-555-2671"); decimals ("175.291249", "0.25 0.50") are no phone.
    if "." in separators and (" " in candidate.strip() or len(groups) < 3):
        return False
    return len(separators) <= 1


def _parse(candidate: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None


def _grouped_as_national(candidate: str, national: str) -> bool:
    """True if ``candidate`` writes the national number with the area code (its first group) the national format
    has; later groups vary too much between writers (``(013) 1457160`` for ``013 145 7160``, ``01632 960 462``)."""
    national_digits = "".join(_DIGITS.findall(national))  # with the trunk prefix where the region writes one
    written = _DIGITS.findall(candidate)
    # Drop a written country code or trunk prefix ("1-800-...") in front of the national number.
    while written and "".join(written).endswith(national_digits) and "".join(written) != national_digits:
        written = written[1:]
    return "".join(written) == national_digits and len(written[0]) == len(_DIGITS.search(national)[0])
