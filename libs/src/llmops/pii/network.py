"""Emails and IP addresses (see :mod:`llmops.pii` for what each covers)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

Hit = tuple[int, int, str]

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w\-])"
)
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "json", "txt"})

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?:%[\w.]+)?(?![\w:])"
)
IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:")

# A dotted quad right after one of these words is a version number ("upgraded to 2.4.24.161", "v1.2.3.4") ...
_VERSION_BEFORE = re.compile(
    r"(?:\b(?:versions?|ver|release[sd]?|rel|build|firmware|fw|patch|revision|rev|tag|"
    r"(?:up|down)grad(?:e|ed|ing)\s+(?:from|to)|updat(?:e|ed|ing)\s+(?:from|to)|bump(?:ed|ing)?\s+(?:\w+\s+)?to|"
    r"pinned\s+(?:at|to))"
    r"\s*:?\s*|\bv|[=<>~!]=\s*)$",
    re.IGNORECASE,
)
# ... unless it has a port, a prefix length or the access-log shape after it.
_ADDRESS_AFTER = re.compile(r":\d{1,5}\b| - - \[|/\d{1,2}\b")
_LOOK_BEFORE = 32


def find_emails(text: str) -> Iterator[Hit]:
    for match in _EMAIL.finditer(text):
        if match[1].lower() not in _FILE_SUFFIXES:
            yield (*match.span(), "email")


def find_ipv4(text: str, start: int, end: int) -> Iterator[Hit]:
    for match in IPV4.finditer(text, start, end):
        before = text[max(0, match.start() - _LOOK_BEFORE) : match.start()]
        if _VERSION_BEFORE.search(before) is not None:
            after = text[match.end() : match.end() + 6]
            if _ADDRESS_AFTER.match(after) is None:
                continue
        yield (*match.span(), "ip")


def find_ipv6(text: str) -> Iterator[Hit]:
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
