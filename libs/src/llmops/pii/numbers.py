"""IBANs, payment cards and national ids (see :mod:`llmops.pii` for what each covers)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import itin, ssn

Hit = tuple[int, int, str]

_IBAN = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)")
# Digit-based ids; a number is not read from the tail of a longer run of digit groups ("RF18 5390 0754 7034").
_NUMBER = re.compile(
    r"(?<![\w\-.])(?<!\d[ \-])(?:"
    r"(?P<grouped>\d{4}([ \-])\d{4}\2\d{4}\2\d{1,4}(?:\2\d{1,3})?|\d{4}([ \-])\d{6}\3\d{4,5})"
    r"|(?P<bare>\d{8,19})(?P<letter>-?[A-Z])?"
    r"|(?P<ssn>\d{3}([ \-])\d\d\7\d{4})"
    r"|(?P<idnr>\d\d \d{3} \d{3} \d{3})"
    r"|(?P<bsn>\d{4}\.\d\d\.\d{3})"
    r"|(?P<nir>[1-478](?P<nsep> ?)\d\d(?P=nsep)\d\d(?P=nsep)(?:\d\d|2[AB])(?P=nsep)\d{3}(?P=nsep)\d{3}(?P=nsep)\d\d)"
    r")(?![\w]|[.\-]\d| \d{1,4}(?![\w.:/]))"
)
_NIE = re.compile(r"(?<![\w\-.])[XYZ]-?\d{7}-?[A-Z](?!\w)")
_NINO = re.compile(r"(?<!\w)([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])( ?)(?:\d{6}|\d\d\2\d\d\2\d\d) ?([A-Z])(?!\w)")
_NINO_UNUSED_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT"})
_CODICE_FISCALE = re.compile(r"(?<![\w])[A-Z]{6}[\dLMNP-V]{2}[ABCDEHLMPRST][\dLMNP-V]{2}[A-Z][\dLMNP-V]{3}[A-Z](?!\w)")

# Words that name an id (any of the supported languages), looked for just before a weakly checked one.
_CONTEXT_BEFORE = 48
_US_WORDS = re.compile(r"\b(?:ssn|ss#|social\s+security|itin|taxpayer|tin)\b", re.IGNORECASE)
_GB_WORDS = re.compile(r"\b(?:nino|national\s+insurance|ni\s*(?:no|number|num|#))", re.IGNORECASE)
_DE_WORDS = re.compile(
    r"\b(?:steuer[\w-]*|idnr|id-nr|identifikationsnummer|tax[ -]?id|tin)\b|steueridentifikationsnummer", re.IGNORECASE
)
_NL_WORDS = re.compile(r"\b(?:bsn|burgerservicenummer|sofi[\w-]*)\b", re.IGNORECASE)
# Cards whose lengths barcodes share (12, 13 digits) need one of these words before them, and none of the next.
_CARD_WORDS = re.compile(
    r"\b(?:card|cards|credit|debit|visa|mastercard|maestro|amex|jcb|diners|discover|cc|pan|karte|kreditkarte|"
    r"karten\w*|kredit\w*|carte|carta|tarjeta|kaart|paid|pay|charge[ds]?|refund\w*)\b",
    re.IGNORECASE,
)
_DEVICE_WORDS = re.compile(r"\b(?:imei|serial|seriennummer|série|seriale|serie|s/n)\b", re.IGNORECASE)
_CODE_WORDS = re.compile(
    r"\b(?:ean|gtin|upc|isbn|imei|barcode|serial|sku|order|tracking|ticket|invoice|ref|reference|customer|client|"
    r"member|kunden\w*|referen\w*)\b",
    re.IGNORECASE,
)


def find_ibans(text: str, start: int, end: int) -> Iterator[Hit]:
    for match in _IBAN.finditer(text, start, end):
        # The last group may be a following word ("... 7034 THEN"): drop whole groups until the checksum holds.
        candidate = match[0]
        while len(candidate.replace(" ", "")) >= 15:
            if stdnum_iban.is_valid(candidate):
                yield match.start(), match.start() + len(candidate), "iban"
                break
            candidate = candidate[: max(candidate.rfind(" "), len(candidate) - 4)].rstrip()


def find_numbers(text: str, start: int, end: int, countries: frozenset[str]) -> Iterator[Hit]:
    """Cards and national ids of ``countries`` (``US``, ``GB`` ...) inside one window of ``text``."""
    for match in _NUMBER.finditer(text, start, end):
        kind = _number_kind(text, match, countries)
        if kind is not None:
            end_at = match.end() if kind == "national_id" or not match["letter"] else match.end("bare")
            yield match.start(), end_at, kind
    if "ES" in countries:
        for match in _NIE.finditer(text, start, end):
            if nie.is_valid(match[0]):
                yield (*match.span(), "national_id")
    if "GB" in countries:
        for match in _NINO.finditer(text, start, end):
            prefix, suffix = match[1], match[3]
            if prefix in _NINO_UNUSED_PREFIXES:
                continue
            # HMRC issues suffixes A to D; others (ZZ...T placeholders, old records) only where the id is named.
            if suffix in "ABCD" or _named(text, match.start(), _GB_WORDS):
                yield (*match.span(), "national_id")


def find_codici_fiscali(text: str) -> Iterator[Hit]:
    for match in _CODICE_FISCALE.finditer(text):
        if codicefiscale.is_valid(match[0]):
            yield (*match.span(), "national_id")


def _named(text: str, at: int, words: re.Pattern[str]) -> bool:
    return any(not _in_address(text, *m.span()) for m in words.finditer(text, max(0, at - _CONTEXT_BEFORE), at))


def _in_address(text: str, start: int, end: int) -> bool:
    """Whether the word at ``start:end`` is part of an e-mail address or domain (``someone@tin.it``): it names
    nothing there."""
    after = text[end : end + 2]
    return text[start - 1 : start] in ("@", ".") or (after[:1] in ("@", ".") and after[1:].isalnum())


def _number_kind(text: str, match: re.Match[str], countries: frozenset[str]) -> str | None:
    if match["grouped"]:
        digits = match[0].replace(" ", "").replace("-", "")
        return "card" if _is_card(digits) and luhn.is_valid(digits) and _card_context(text, match.start()) else None
    if match["bare"]:
        return _bare_kind(text, match, countries)
    value = match[0]
    if match["ssn"]:
        us = "US" in countries and (value[3] == "-" or _named(text, match.start(), _US_WORDS))
        return "national_id" if us and (ssn.is_valid(value) or itin.is_valid(value)) else None
    if match["idnr"]:
        return "national_id" if "DE" in countries and idnr.is_valid(value) else None
    if match["bsn"]:
        return "national_id" if "NL" in countries and bsn.is_valid(value) else None
    return "national_id" if "FR" in countries and nir.is_valid(value) else None


def _bare_kind(text: str, match: re.Match[str], countries: frozenset[str]) -> str | None:
    digits, at = match["bare"], match.start()
    if match["letter"]:
        return "national_id" if "ES" in countries and len(digits) == 8 and dni.is_valid(match[0]) else None
    length = len(digits)
    if length >= 12 and _is_card(digits) and luhn.is_valid(digits) and _card_context(text, at, strict=length < 14):
        return "card"
    if length == 15 and digits[0] in "123478" and "FR" in countries and nir.is_valid(digits):
        # an IMEI or serial has 15 digits too (one in 97 passes the NIR check): not where it is named so
        if _named(text, at, _DEVICE_WORDS):
            return None
        return "national_id"
    if length == 9:
        if "US" in countries and _named(text, at, _US_WORDS) and (ssn.is_valid(digits) or itin.is_valid(digits)):
            return "national_id"
        if "NL" in countries and _named(text, at, _NL_WORDS) and bsn.is_valid(digits):
            return "national_id"
    if length == 11 and "DE" in countries and _named(text, at, _DE_WORDS) and idnr.is_valid(digits):
        return "national_id"
    return None


def _card_context(text: str, at: int, strict: bool = False) -> bool:
    """A card word before the number, or (for lengths no barcode has) at least no reference or code word."""
    if _named(text, at, _CARD_WORDS):
        return True
    return not strict and not _named(text, at, _CODE_WORDS)


def _is_card(digits: str) -> bool:
    """Issuer prefix and length ranges (public BIN tables); the Luhn check is the caller's."""
    length, head2, head3, head4 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":  # Visa
        return length in (13, 16, 19)
    if 51 <= head2 <= 55 or 2221 <= head4 <= 2720:  # Mastercard
        return length == 16
    if head2 in (34, 37):  # American Express
        return length == 15
    if head2 in (36, 38, 39) or 300 <= head3 <= 305:  # Diners Club
        return length in (14, 16)
    if head2 == 35:  # JCB (3528-3589 assigned; generators use all of 35, and a doubt goes to the card)
        return 16 <= length <= 19
    if head4 in (1800, 2131):  # JCB's old 15-digit range
        return length == 15
    if head2 in (62, 65) or head4 == 6011 or 644 <= head3 <= 649:  # UnionPay, Discover
        return 16 <= length <= 19
    # Maestro: 50, 56 to 69, and 0604 (an old UK range issuer tables still list)
    return (head2 == 50 or 56 <= head2 <= 69 or head4 == 604) and 12 <= length <= 19
