"""The kinds and locales redaction knows, and their parsing from settings; no heavy imports, so validating a
setting does not load phone metadata."""

from __future__ import annotations

from collections.abc import Iterable

ALL_KINDS: frozenset[str] = frozenset({"email", "phone", "card", "iban", "ip", "national_id"})
#: Locales whose phone formats and national ids are known; a redactor reads all of them unless told fewer.
SUPPORTED_LOCALES: tuple[str, ...] = ("de_DE", "en_GB", "en_US", "es_ES", "fr_FR", "it_IT", "nl_NL")
TOKENS: dict[str, str] = {kind: f"[{kind.upper()}]" for kind in ALL_KINDS}


def _names(value: str | Iterable[str]) -> set[str]:
    return {k.strip() for k in (value.split(",") if isinstance(value, str) else value) if k.strip()}


def parse_kinds(value: str | Iterable[str]) -> frozenset[str]:
    """Kinds from ``"all"``, a comma-separated list or an iterable; ``ValueError`` names unknown ones."""
    kinds = _names(value)
    if kinds == {"all"}:
        return ALL_KINDS
    unknown = kinds - ALL_KINDS
    if unknown:
        raise ValueError(f"unknown PII kind(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(ALL_KINDS))}")
    return frozenset(kinds)


def parse_locales(value: str | Iterable[str]) -> tuple[str, ...]:
    """Locales from ``"all"`` (or nothing), a comma-separated list or an iterable, sorted; ``ValueError`` names
    unknown ones."""
    locales = _names(value)
    if not locales or locales == {"all"}:
        return SUPPORTED_LOCALES
    unknown = locales - set(SUPPORTED_LOCALES)
    if unknown:
        raise ValueError(f"unknown locale(s): {', '.join(sorted(unknown))}; supported: {', '.join(SUPPORTED_LOCALES)}")
    return tuple(sorted(locales))
