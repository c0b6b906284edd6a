"""Canonical JSON: the one byte form of an event that hashes and signatures are computed over."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` with sorted keys, no insignificant whitespace and UTF-8 text (RFC 8785 in spirit).

    The same logical document always gives the same bytes, whatever the key order it was built with.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
