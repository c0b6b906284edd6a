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
_TOKEN = re.compile(r"\+?\(?\+?\d+\)?")
_SEPARATORS = re.compile(r"[.\-/]")
_DATE_OR_TIME = re.compile(r"\d{1,4}([./\-])\d{1,2}\1\d{1,4}|\d{1,2}[:.]\d{2}(?:[:.]\d{2})?")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_TRUNK_ZERO = re.compile(r"\(0\)")
# Words that announce a phone number, in the supported languages; looked for just before a candidate.
_PHONE_WORDS = re.compile(
    r"\b(?:phone|telephone|tel|tél|tele?fon[eo]?|telefoon|teléfono|téléphone|mobile?|mob|cell(?:ulare|phone)?|call|calls|"
    r"ring|text|sms|whatsapp|fax|hotline|voicemail|reach|dial|handy(?:nummer)?|mobil|rückruf|anrufen|"
    r"ruf\w*|kontakt\w*|erreichbar|portable|appel\w*|joindre|chiam\w*|recapito|contatt\w*|móvil|movil|llam\w*|contact\w*|"
    r"mobiele?|bel|bellen|bereiken)\b",
    re.IGNORECASE,
)
_WORDS_BEFORE = 60


def find_phones(text: str, start: int, end: int, regions: tuple[str, ...]) -> Iterator[Hit]:
    for match in _PHONE.finditer(text, start, end):
        if _DATE_OR_TIME.fullmatch(match[0]):
            continue  # the common case, settled before anything else
        named = _PHONE_WORDS.search(text, max(0, match.start() - _WORDS_BEFORE), match.start()) is not None
        if _is_phone(match[0], regions, named):
            yield (*match.span(), "phone")
            continue
        # A candidate may run into a neighbouring number ("room 12 415-555-2671"): look for a phone in whole
        # tokens of it, but not in runs of space-separated groups (references, cards: "0751 5919 8798 3028").
        offset = match.start()
        tokens = [(m.start() + offset, m.end() + offset) for m in _TOKEN.finditer(match[0])]
        for span in _phones_in_tokens(text, tokens, regions, named, whole_tried=True):
            yield (*span, "phone")


def _phones_in_tokens(
    text: str, tokens: list[Span], regions: tuple[str, ...], named: bool, whole_tried: bool = False
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
        if _is_phone(text[start:end], regions, named and first == 0):
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


@lru_cache(maxsize=65536)
def _is_phone(candidate: str, regions: tuple[str, ...], named: bool) -> bool:
    extension = _EXTENSION.search(candidate)
    main = candidate[: extension.start()] if extension else candidate
    digits = sum(ch.isdigit() for ch in main)
    if not 7 <= digits <= 15 or not _plausible_layout(main) or _DATE_OR_TIME.fullmatch(main):
        return False
    bare = main.lstrip("(")
    if bare.startswith(("+", "00")):
        international = "+" + _TRUNK_ZERO.sub("", bare[1:] if bare[0] == "+" else bare[2:], count=1)
        number = _parse(international, None)
        if number is not None and _possible(number):
            return True
        if bare[0] == "+":
            return False
    if digits < 8 or (not named and (_DOTTED_QUAD.fullmatch(main) or len(_TOKEN.findall(main)) == 1)):
        return False  # a local number without its area code; a bad IP address; a bare run without a phone word
    for region in regions:
        number = _parse(main, region)
        if number is None or not _possible(number):
            continue
        if named or (_grouped_as_national(main, number) and _valid_or_nanp(number)):
            return True
    # After a phone word, a trunk-prefixed national layout is a phone even where no region knows the range.
    return named and bare.startswith("0") and 8 <= digits <= 13


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


def _grouped_as_national(candidate: str, number: phonenumbers.PhoneNumber) -> bool:
    """True if ``candidate`` writes the national number with the area code (its first group) the national format
    has; later groups vary too much between writers (``(013) 1457160`` for ``013 145 7160``, ``01632 960 462``)."""
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    national_digits = "".join(re.findall(r"\d+", national))  # with the trunk prefix where the region writes one
    written = re.findall(r"\d+", candidate)
    # Drop a written country code or trunk prefix ("1-800-...") in front of the national number.
    while written and "".join(written).endswith(national_digits) and "".join(written) != national_digits:
        written = written[1:]
    return "".join(written) == national_digits and len(written[0]) == len(re.match(r"\D*(\d+)", national)[1])
