"""The redactor dataset ingest used before llmops.pii, frozen here as the baseline of bench_pii.py (not maintained).

PII redaction for dataset ingest: find personal data in free text and replace it with a token per kind.

Kinds and what counts as a hit:

- ``email``: ``local@domain.tld`` (plus tags and subdomains); image names such as ``icon@2x.png`` are kept, and so
  are ``user@localhost``, ``@mentions`` and ``pkg@1.2.3``.
- ``phone``: numbers that ``phonenumbers`` says are valid. A leading ``+`` (or ``00``) is parsed as international.
  A number without one must be split into groups and either be valid in the default region (``US``) with its
  digits grouped exactly as that region writes them (``415-555-2671``, ``(415) 555-2671``), or start with a trunk
  ``0`` and be valid in the default or a fallback region (``GB``, ``DE``: ``020 7946 0958``, ``030/12345678``).
  Bare digit runs without ``+`` are never phones, so order numbers and plain integers stay.
- ``card``: 14 to 19 digits, bare or grouped by spaces or dashes, with a known issuer prefix and length (Visa
  16/19, Mastercard, Amex, Discover, Diners, JCB, UnionPay) and a valid Luhn check digit.
- ``iban``: a valid IBAN (country format and mod-97 checksum, via ``stdnum.iban``), with or without spaces.
- ``ip``: IPv4 dotted quads and IPv6 (validated by ``ipaddress``). ``1.2.3.4`` is an address; ``v1.2.3.4``,
  ``3.14``, ``x[1::2]``, ``std::vector``, MAC addresses and ``12:30:45`` are not.
- ``national_id``: US SSN written ``123-45-6789`` (areas 000, 666 and 9xx, group 00, serial 0000 and known
  misused numbers excluded, via ``stdnum.us.ssn``); UK National Insurance number ``AB 12 34 56 C`` / ``AB123456C``
  (HMRC prefix rules; it has no check digit); German Steuer-ID (``stdnum.de.idnr``) and Dutch BSN
  (``stdnum.nl.bsn``), both checksum-validated. The two EU ids are accepted in their printed groupings
  (``12 345 678 903``, ``1234.56.782``) anywhere, and as a bare digit run only after a naming keyword
  (``Steuer-ID``, ``IdNr``, ``BSN`` ...), because one random 9 or 11 digit number in ten passes their checksums.

Speed: text with fewer than four ASCII digits skips the digit-based kinds after a digit count done in C; otherwise
one scan finds runs of six or more digits (separators allowed) and dotted quads, and the digit-based kinds are
searched only in small windows around those runs. Emails are searched only if the text has an ``@``, IPv6 only if
it has two colons around hex. Regexes are compiled once; the validators (Luhn, mod-97, ``phonenumbers``) run only on
regex matches. Overlaps are resolved by priority: email, IBAN, card, national id, IP, then phone, so a card number
or IBAN is never counted as a phone too.

Not covered: lower-case IBANs and NINOs, SSNs without dashes, phones of other regions written without ``+``/``00``,
a trunk-prefixed (UK/German) number glued behind another number ("room 12 030 12345678"), IPv6 with an unbracketed
port, 13-digit Visa and Maestro cards. A four-part version number such as ``1.2.3.4`` reads as an IPv4 address.

Hand-written parts: the candidate regexes, the card issuer table and the NINO prefix rules (no library covers
them); checksums and phone metadata come from ``python-stdnum`` and ``phonenumbers``.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.de import idnr
from stdnum.nl import bsn
from stdnum.us import ssn

ALL_KINDS: frozenset[str] = frozenset({"email", "phone", "card", "iban", "ip", "national_id"})
TOKENS: dict[str, str] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "iban": "[IBAN]",
    "ip": "[IP]",
    "national_id": "[NATIONAL_ID]",
}
# Order in which kinds claim text; checksum-validated kinds go before phones.
_PRIORITY = ("email", "iban", "card", "national_id", "ip", "phone")

Span = tuple[int, int]

# Every digit-based candidate holds a run of six digits or a dotted quad and reaches at most this far around it
# (an IBAN's letters: "NL91 ABNA " before, " MTLC AST0 01S" after).
_DIGIT_RUN = re.compile(r"[0-9](?:[ ().\-/]{0,3}[0-9]){5,}|[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")
_WINDOW_BEFORE, _WINDOW_AFTER = 16, 16
_IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:")

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w\-])"
)
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "json", "txt"})

_IBAN = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)")
# Cards, SSNs, Steuer-IDs and BSNs have disjoint shapes, so one scan finds them all.
_NUMBER_ID = re.compile(
    r"\d(?<![\w\-.]\d)(?:"
    r"(?P<card>\d{3}([ \-])\d{4}\2\d{4}\2\d{2,4}(?:\2\d{3})?|\d{3}([ \-])\d{6}\3\d{4,5}|\d{13,18})"
    r"|(?P<ssn>\d\d-\d\d-\d{4})"
    r"|(?P<idnr>\d \d{3} \d{3} \d{3}|(?P<idnr_bare>\d{10}))"
    r"|(?P<bsn>\d{3}\.\d\d\.\d{3}|(?P<bsn_bare>\d{8}))"
    r")(?![\w]|[.\-]\d)"
)
_NINO = re.compile(r"(?<!\w)([ABCEGHJ-PRSTW-Z][ABCEGHJ-NPRSTW-Z])( ?)\d\d\2\d\d\2\d\d ?[A-D](?!\w)")
_NINO_UNUSED_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
_IDNR_CONTEXT = re.compile(r"\b(?:steuer[\w-]*|idnr|id-nr|identifikationsnummer|tax[ -]?id|tin)\b", re.IGNORECASE)
_BSN_CONTEXT = re.compile(r"\b(?:bsn|burgerservicenummer|sofi[\w-]*)\b", re.IGNORECASE)
_CONTEXT_BEFORE = 48

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?:%[\w.]+)?(?![\w:])"
)

_PHONE = re.compile(r"(?<![\w+/.\-#$€£])(?:\+ ?|\(\+?)?\d[\d ().\-/]{5,24}\d\)?(?![\w]|[.\-/]\d)")
_PHONE_TOKEN = re.compile(r"\+?\(?\+?\d+\)?")
_PHONE_SEPARATORS = re.compile(r"[ .\-/]")
_AREA_CODE = re.compile(r"0\d+")
_DATE_OR_TIME = re.compile(r"\d{1,4}([./\-])\d{1,2}\1\d{1,4}|\d{1,2}[:.]\d{2}(?:[:.]\d{2})?")

Hit = tuple[int, int, str]
_RANK = {kind: rank for rank, kind in enumerate(_PRIORITY)}


class PiiRedactor:
    """Replaces the PII kinds in ``kinds`` with ``[KIND]`` tokens; one instance can be reused for any number of rows."""

    def __init__(
        self,
        kinds: frozenset[str] = ALL_KINDS,
        *,
        default_region: str = "US",
        fallback_regions: tuple[str, ...] = ("GB", "DE"),
    ) -> None:
        unknown = set(kinds) - ALL_KINDS
        if unknown:
            raise ValueError(f"unknown PII kinds: {sorted(unknown)}")
        self.kinds = frozenset(kinds)
        self.default_region = default_region
        self.regions = (default_region, *(r for r in fallback_regions if r != default_region))
        self._digit_kinds = bool(self.kinds - {"email"})

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """Return ``text`` with every PII hit replaced by its token, and the number of hits per kind."""
        counts: Counter[str] = Counter()
        return self._redact_counting(text, counts), counts

    def redact_value(self, value: Any) -> tuple[Any, Counter[str]]:
        """Redact every string inside a JSON-like value (dict values, list items); dict keys are left as they are."""
        counts: Counter[str] = Counter()
        return self._walk(value, counts), counts

    def _walk(self, value: Any, counts: Counter[str]) -> Any:
        if isinstance(value, str):
            return self._redact_counting(value, counts)
        if isinstance(value, dict):
            return {key: self._walk(item, counts) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(item, counts) for item in value]
        return value

    def _redact_counting(self, text: str, counts: Counter[str]) -> str:
        hits = self._find(text)
        if not hits:
            return text
        taken: list[Hit] = []
        for hit in sorted(hits, key=lambda hit: (_RANK[hit[2]], hit[0])):
            if not any(hit[0] < t_end and t_start < hit[1] for t_start, t_end, _ in taken):
                taken.append(hit)
        taken.sort()
        parts: list[str] = []
        cursor = 0
        for start, end, kind in taken:
            parts += (text[cursor:start], TOKENS[kind])
            cursor = end
            counts[kind] += 1
        parts.append(text[cursor:])
        return "".join(parts)

    def _find(self, text: str) -> list[Hit]:
        hits: list[Hit] = []
        if "@" in text and "email" in self.kinds:
            hits += _find_emails(text)
        if self._digit_kinds:
            for start, end in _digit_windows(text):
                hits += (hit for hit in _find_numbers(text, start, end) if hit[2] in self.kinds)
                if "phone" in self.kinds:
                    hits += self._find_phones(text, start, end)
        if "ip" in self.kinds and ":" in text and _IPV6_GATE.search(text) is not None:
            hits += _find_ipv6(text)
        return hits

    def _find_phones(self, text: str, start: int, end: int) -> Iterator[Hit]:
        for match in _PHONE.finditer(text, start, end):
            if _DATE_OR_TIME.fullmatch(match[0]):
                continue  # the common case, settled before tokenising
            offset = match.start()
            tokens = [(m.start() + offset, m.end() + offset) for m in _PHONE_TOKEN.finditer(match[0])]
            for span in self._phones_in_tokens(text, tokens):
                yield (*span, "phone")

    def _phones_in_tokens(self, text: str, tokens: list[Span]) -> Iterator[Span]:
        # A candidate may run into a neighbouring number ("room 12 415-555-2671"): take the longest valid run of
        # whole tokens that starts and ends at a space, then look for more phones on either side of it.
        last = len(tokens) - 1
        firsts = [i for i in range(last + 1) if i == 0 or text[tokens[i][0] - 1].isspace()]
        lasts = [i for i in range(last + 1) if i == last or text[tokens[i][1]].isspace()]
        runs = sorted(((i, j) for i in firsts for j in lasts if j >= i), key=lambda run: run[0] - run[1])
        for first, final in runs:
            start, end = tokens[first][0], tokens[final][1]
            # Loosely grouped trunk-prefixed numbers only from the start of a run, never from the tail of a longer
            # number ("DE89 3704 0044 0532 0130 01", an IBAN with a typo, holds a valid German "0532 0130 01").
            if _is_phone(text[start:end], self.regions, first == 0):
                yield from self._phones_in_tokens(text, tokens[:first])
                yield start, end
                yield from self._phones_in_tokens(text, tokens[final + 1 :])
                return


def _digit_windows(text: str) -> list[Span]:
    """Merged spans around each digit run. A window ends at a space so that a match cannot be cut short there;
    look-behinds see the text before a window's start, so it needs no such care."""
    windows: list[Span] = []
    encoded = text.encode("utf-8", "surrogatepass")  # JSON may decode to lone surrogates
    if len(encoded) - len(encoded.translate(None, b"0123456789")) < 4:
        return windows  # counting digits in C is ten times faster than the regex below
    for match in _DIGIT_RUN.finditer(text):
        start = max(0, match.start() - _WINDOW_BEFORE)
        end = text.find(" ", match.end() + _WINDOW_AFTER)
        end = len(text) if end < 0 else end
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    return windows


def _find_emails(text: str) -> Iterator[Hit]:
    for match in _EMAIL.finditer(text):
        if match[1].lower() not in _FILE_SUFFIXES:
            yield (*match.span(), "email")


def _find_numbers(text: str, start: int, end: int) -> Iterator[Hit]:
    """IBANs, cards, national ids and IPv4 addresses inside one window."""
    for match in _IBAN.finditer(text, start, end):
        # The last group may be a following word ("... 7034 THEN"): drop whole groups until the checksum holds.
        candidate = match[0]
        while len(candidate.replace(" ", "")) >= 15:
            if stdnum_iban.is_valid(candidate):
                yield match.start(), match.start() + len(candidate), "iban"
                break
            candidate = candidate[: max(candidate.rfind(" "), len(candidate) - 4)].rstrip()
    for match in _NUMBER_ID.finditer(text, start, end):
        if _is_number_id(text, match):
            yield (*match.span(), "card" if match["card"] else "national_id")
    for match in _NINO.finditer(text, start, end):
        if match[1] not in _NINO_UNUSED_PREFIXES:
            yield (*match.span(), "national_id")
    for match in _IPV4.finditer(text, start, end):
        yield (*match.span(), "ip")


def _is_number_id(text: str, match: re.Match[str]) -> bool:
    if match["card"]:
        digits = match[0].replace(" ", "").replace("-", "")
        return _is_card_issuer(digits) and luhn.is_valid(digits)
    if match["ssn"]:
        return ssn.is_valid(match[0])
    context_from = max(0, match.start() - _CONTEXT_BEFORE)
    if match["idnr"]:
        bare_ok = not match["idnr_bare"] or _IDNR_CONTEXT.search(text, context_from, match.start()) is not None
        return bare_ok and idnr.is_valid(match[0])
    bare_ok = not match["bsn_bare"] or _BSN_CONTEXT.search(text, context_from, match.start()) is not None
    return bare_ok and bsn.is_valid(match[0])


def _is_card_issuer(digits: str) -> bool:
    # 13-digit Visa and Maestro are left out: they share lengths and prefixes with EAN-13 barcodes and
    # millisecond timestamps, and Luhn alone lets one in ten of those through.
    length, head2, head3, head4 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":  # Visa
        return length in (16, 19)
    if 51 <= head2 <= 55 or 2221 <= head4 <= 2720:  # Mastercard
        return length == 16
    if head2 in (34, 37):  # American Express
        return length == 15
    if head2 in (36, 38, 39) or 300 <= head3 <= 305:  # Diners Club
        return length in (14, 16)
    if 3528 <= head4 <= 3589 or head2 in (62, 65) or head4 == 6011 or 644 <= head3 <= 649:
        return 16 <= length <= 19  # JCB, UnionPay, Discover
    return False


def _find_ipv6(text: str) -> Iterator[Hit]:
    for match in _IPV6.finditer(text):
        address = match[0].split("%", 1)[0]
        groups = [g for g in address.split(":") if g]
        # Demand one long group so slices (x[1::2]) are not read as addresses.
        if len(groups) < 2 or all(len(g) < 3 for g in groups):
            continue
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            continue
        yield (*match.span(), "ip")


@lru_cache(maxsize=65536)
def _is_phone(candidate: str, regions: tuple[str, ...], trunk_prefixed_ok: bool) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    if not 7 <= digits <= 15 or not _plausible_layout(candidate):
        return False
    bare = candidate.lstrip("(")
    if bare.startswith(("+", "00")):
        number = _parse(bare if bare[0] == "+" else "+" + bare[2:], None)
        return number is not None and phonenumbers.is_valid_number(number)
    if _DATE_OR_TIME.fullmatch(candidate):
        return False
    number = _parse(candidate, regions[0])
    if number is not None and phonenumbers.is_valid_number(number) and _grouped_as_national(candidate, number):
        return True
    # Trunk-prefixed numbers (UK, German, ... national format) are grouped too freely to check the grouping:
    # demand an area code group of 3 to 5 digits, 10 to 12 digits in all, and no dots (decimal lists).
    area = _AREA_CODE.match(bare)
    if (
        not trunk_prefixed_ok
        or not 10 <= digits <= 12
        or "." in candidate
        or area is None
        or not 3 <= len(area[0]) <= 5
    ):
        return False
    for region in regions:
        number = _parse(candidate, region)
        if number is not None and phonenumbers.is_valid_number(number):
            return True
    return False


def _plausible_layout(candidate: str) -> bool:
    groups = _PHONE_TOKEN.findall(candidate)
    if len(groups) < 2 and not candidate.startswith("+"):
        return False  # a bare digit run is an order number or an integer as often as a phone
    # Brackets hold an area code or the "(0)" after a country code, never a later group ("417-420 (2003)").
    if any("(" in group for group in groups[2:]) or (
        len(groups) > 1 and "(" in groups[1] and not groups[0].startswith(("+", "00", "1"))
    ):
        return False
    # One kind of separator, or spaces and one other ("+1 415-555-2671"); "16.727.230/0001-97" is no phone.
    return len(set(_PHONE_SEPARATORS.findall(candidate)) - {" "}) <= 1


def _parse(candidate: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None


def _grouped_as_national(candidate: str, number: phonenumbers.PhoneNumber) -> bool:
    """True if ``candidate`` groups its digits exactly as the national format does (``415-555-2671``)."""
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    national_digits = "".join(re.findall(r"\d+", national))  # with the trunk prefix where the region writes one
    written = re.findall(r"\d+", candidate)
    # Drop a written country code or trunk prefix ("1-800-...") in front of the national number.
    while written and "".join(written).endswith(national_digits) and "".join(written) != national_digits:
        written = written[1:]
    return "".join(written) == national_digits and _group_breaks(" ".join(written)) == _group_breaks(national)


def _group_breaks(formatted: str) -> set[int]:
    breaks, count = set(), 0
    for group in re.findall(r"\d+", formatted):
        count += len(group)
        breaks.add(count)
    return breaks


_default_redactor: PiiRedactor | None = None


def redact_value(value: Any, redactor: PiiRedactor | None = None) -> tuple[Any, Counter[str]]:
    """Redact every string in a JSON-like dataset row (keys untouched); returns the new value and counts per kind."""
    global _default_redactor
    if redactor is None:
        if _default_redactor is None:
            _default_redactor = PiiRedactor()
        redactor = _default_redactor
    return redactor.redact_value(value)
