"""Canonical JSON: the one byte form of an event that hashes and signatures are computed over."""

from __future__ import annotations

from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as UTF-8 JSON with keys sorted at every level and no insignificant whitespace.

    The same logical document always gives the same bytes, whatever the key order it was built with (RFC 8785 in
    spirit; orjson, because every event passes through here on its way to the outbox and the audit log).
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
