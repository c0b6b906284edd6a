"""PII redaction: find personal data in free text and replace each hit with a token per kind (``[EMAIL]`` ...).

One implementation for every place that keeps text people wrote: dataset ingest today, the gateway's logged prompts
and answers next. ``PiiRedactor(kinds, locales=...)`` is built once and reused; ``redact(text)`` returns the new text
and the hits counted per kind, ``find(text)`` the spans, ``may_hold_pii(text)`` a cheap test that is never false
when there is a hit (test many short texts joined, once), and :class:`PiiReport` sums counts over many rows.

Locale hints (``SUPPORTED_LOCALES``; default: all of them) choose the phone regions whose national formats are read
and the national ids looked for. Kinds, and what each covers and does not:

- ``email``: ``local@domain.tld`` (tags, subdomains). Not: image names (``icon@2x.png``), ``user@localhost``,
  ``@mentions``, ``pkg@1.2.3``.
- ``phone``: ``phonenumbers`` decides. With ``+`` or ``00``: a possible number of its country (``+44(0)115 4960914``,
  ``001-626-828-0247``). Without: a possible number of a hinted region, grouped as that region groups it (groups may
  be merged: ``(013) 1457160``, ``03 70 11 13 66``, ``(591)341-7776``), in an assigned range or written with the
  region's trunk prefix (ranges not assigned, such as Ofcom's drama ranges ``0115 496 0xxx``, ``01632 960xxx``).
  Extensions (``x76360``, ``ext. 12``) are part of the number. A bare digit run, or a number the grouping rule
  refuses, counts only after a phone word (``call``, ``Tel.``, ``Handy``, ``portable``, ``cellulare``, ``móvil``,
  ``bel`` ...); a bare run that is a whole national number also after ``number`` alone (``the number on file is
  01914960079``; not ``ticket number``, ``account number`` ...). Not: dates, times, decimals,
  a run of digit groups longer than one number (``customer ref 0751 5919 8798 3028``; an ``RF`` reference's tail).
- ``card``: Luhn-valid numbers in the issuers' length ranges (Visa 13/16/19, Mastercard 16, Amex 15, Diners 14-16,
  Discover/UnionPay 16-19, JCB 15/16, Maestro 12-19), bare or in groups. The lengths barcodes share (12 and 13
  digits) need a card word nearby or grouping in fours; a barcode word (``EAN``, ``ISBN``, ``IMEI`` ...) before one
  keeps it. Not: numbers of other issuers, non-Luhn numbers.
- ``iban``: valid IBANs (country format and mod-97, ``stdnum.iban``), bare or grouped by four. Not: lower case.
- ``ip``: IPv4 dotted quads and IPv6 (``ipaddress``). A quad after a version word (``version``, ``v``, ``release``,
  ``upgraded to``, ``build``, ``firmware`` ...) is a version, unless it has a port or stands in a log shape (a
  ``client``/``from``/``host`` word before it, an access-log line). Not: ``std::vector``, MAC addresses, times.
- ``national_id`` (``python-stdnum`` validators; check digits decide): US SSN and ITIN (``123-45-6789``), UK NINO
  (``AB 12 34 56 C``, ``AB 123456 C``, ``AB123456C``), DE Steuer-ID, FR NIR, IT codice fiscale, ES DNI/NIF and NIE,
  NL BSN. Ids whose check is weak or missing (a bare SSN, BSN or Steuer-ID digit run, a NINO) count only after a
  naming word (``SSN``, ``BSN``, ``Steuer-ID``, ``National Insurance`` ...), except in their printed groupings.
  Not: passports, driving licences, other countries' ids.

Overlaps go to the kind that claims text first: email, IBAN, card, national id, IP, then phone. Not looked at at all:
digit runs glued to a lower-case word, ``_``, ``-`` or ``.`` (slugs and names such as ``run-1-123456``), codici
fiscali in lower case or with omocodia (letters for digits). Speed: the places where a digit run may start are
found in C (a translation and a search over the text's bytes), and the kinds are searched only in small windows
around the runs; ``phonenumbers`` parses a candidate only for regions whose number lengths fit it, once per distinct
candidate.
Hand-written parts: candidate regexes, the issuer table, keyword lists and grouping rules (no library covers them);
checksums and phone metadata come from ``python-stdnum`` and ``phonenumbers``.
"""

from typing import TYPE_CHECKING, Any

from llmops.pii.kinds import ALL_KINDS, SUPPORTED_LOCALES, TOKENS, parse_kinds, parse_locales

if TYPE_CHECKING:
    from llmops.pii.redactor import PiiRedactor, PiiReport, redact_value


def __getattr__(name: str) -> Any:
    # The redactor loads phone metadata and validators (a quarter of a second): only when it is used.
    if name in {"PiiRedactor", "PiiReport", "redact_value"}:
        from llmops.pii import redactor

        return getattr(redactor, name)
    raise AttributeError(name)


__all__ = [
    "ALL_KINDS",
    "SUPPORTED_LOCALES",
    "TOKENS",
    "PiiRedactor",
    "PiiReport",
    "parse_kinds",
    "parse_locales",
    "redact_value",
]
