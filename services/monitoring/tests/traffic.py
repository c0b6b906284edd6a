"""Synthetic inference traffic for the monitoring tests: seeded records with every column of ``records.SCHEMA``,
drawn from one stable distribution, or with a planted shift (longer inputs, another topic, slower answers)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from llmops_monitoring.records import COLUMNS

Shift = Literal["longer_inputs", "topic", "slower"]
#: Every planted shift at once: what the drift acceptance test plants.
ALL_SHIFTS: tuple[Shift, ...] = ("longer_inputs", "topic", "slower")

START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

_COMMON_WORDS = (
    "please help me with my how can you tell what is the best way to do this thanks again question about "
    "could would should need want know explain show example quick simple today again really just also"
)
_BILLING_WORDS = (
    "invoice refund account payment charge subscription plan card receipt billing balance credit debit bank "
    "transfer statement renewal cancel upgrade downgrade discount coupon tax vat price pricing checkout order "
    "overdue fee currency wallet paypal installment annual monthly trial license seat quota limit usage"
)
_COOKING_WORDS = (
    "recipe oven flour sugar butter garlic onion tomato basil pasta risotto simmer roast bake whisk dough yeast "
    "knead skillet broth saffron lemon pepper salt chicken salmon tofu lentil curry noodle dumpling marinade "
    "vinegar glaze caramel custard pastry sourdough grill steam saute braise"
)
_COMMON = _COMMON_WORDS.split()
_VOCABULARY = {"billing": _BILLING_WORDS.split(), "cooking": _COOKING_WORDS.split()}
_REFUSAL = "I am sorry but I cannot help with that request"

#: The stable distribution: words per input and output (log-normal), latency per output token and first token.
_INPUT_WORDS = (3.0, 0.5)
_OUTPUT_WORDS = (4.0, 0.6)
_MS_PER_TOKEN = 18.0
_TTFT_MS = (5.0, 0.35)


def records(
    n: int,
    *,
    seed: int,
    start: datetime = START,
    minutes: float = 60.0,
    shift: Shift | Iterable[Shift] | None = None,
    text_mode: Literal["redacted", "hashed"] = "redacted",
    deployment_id: str = "dep-1",
) -> list[dict[str, Any]]:
    """``n`` records spread over ``minutes`` from ``start`` (time order), the same draw for the same seed.

    ``shift`` plants one or more changes: ``longer_inputs`` (inputs 2.5 times as long), ``topic`` (cooking instead of
    billing in inputs and outputs), ``slower`` (latency and time to first token 1.6 times). ``hashed`` records carry
    only the texts' hashes, as a gateway in hashed mode sends them.
    """
    shifts = {shift} if isinstance(shift, str) else set(shift or ())
    rng = np.random.default_rng(seed)
    vocabulary = _VOCABULARY["cooking" if "topic" in shifts else "billing"]
    input_scale = 2.5 if "longer_inputs" in shifts else 1.0
    slow = 1.6 if "slower" in shifts else 1.0

    offsets = np.sort(rng.uniform(0, minutes * 60, n))
    input_words = np.maximum(1, np.rint(rng.lognormal(*_INPUT_WORDS, n) * input_scale)).astype(int)
    output_words = np.maximum(1, np.rint(rng.lognormal(*_OUTPUT_WORDS, n))).astype(int)
    failed = rng.random(n) < 0.01
    finish = rng.choice(["stop", "length", "tool_calls"], size=n, p=[0.92, 0.05, 0.03])
    refusal = rng.random(n) < 0.02
    empty = rng.random(n) < 0.005
    pii = rng.random(n) < 0.01
    stream = rng.random(n) < 0.5
    ttft = rng.lognormal(*_TTFT_MS, n) * slow
    per_token = rng.normal(_MS_PER_TOKEN, 2.0, n).clip(5) * slow

    inputs = _texts(rng, vocabulary, input_words)
    outputs = _texts(rng, vocabulary, output_words)
    ids = rng.bytes(32 * n)
    users = rng.integers(0, 50, n)
    rows = []
    for i in range(n):
        text_in = inputs[i]
        if failed[i]:
            text_out = None
        elif empty[i]:
            text_out = ""
        elif refusal[i]:
            text_out = _REFUSAL
        else:
            text_out = outputs[i]
        tokens_in = 12 + round(len(text_in) / 4)
        tokens_out = None if text_out is None else round(len(text_out) / 4)
        flags = []
        if not failed[i]:
            if finish[i] == "length":
                flags.append("truncated")
            if empty[i]:
                flags.append("empty")
            elif refusal[i]:
                flags.append("refusal")
            if pii[i]:
                flags.append("pii")
        latency = float(ttft[i] if failed[i] else ttft[i] + per_token[i] * tokens_out)
        row = {
            "event_id": str(uuid.UUID(bytes=ids[32 * i : 32 * i + 16], version=4)),
            "time": start + timedelta(seconds=float(offsets[i])),
            "outcome": "failed" if failed[i] else "completed",
            "source": "llmops.gateway",
            "request_id": str(uuid.UUID(bytes=ids[32 * i + 16 : 32 * i + 32], version=4)),
            "project": "demo",
            "route": "support-chat",
            "api": "chat.completions",
            "stream": bool(stream[i]),
            "shadow": False,
            "deployment_id": deployment_id,
            "model_version_id": "mv-1",
            "prompt_version_id": "pv-1",
            "user": f"user-{users[i]}",
            "key_id": "key-1",
            "attempts": 1,
            "latency_ms": round(latency, 3),
            "time_to_first_token_ms": None if failed[i] else round(float(ttft[i]), 3),
            "tokens_in": None if failed[i] else tokens_in,
            "tokens_out": tokens_out,
            "usage_source": None if failed[i] else "backend",
            "cost": 0.0 if failed[i] else round((tokens_in + tokens_out) * 2e-6, 8),
            "finish_reason": None if failed[i] else str(finish[i]),
            "status": 503 if failed[i] else None,
            "error": "upstream unavailable" if failed[i] else None,
            "text_mode": text_mode,
            "input": text_in if text_mode == "redacted" else None,
            "output": text_out if text_mode == "redacted" else None,
            "input_sha256": _sha256(text_in),
            "output_sha256": None if text_out is None else _sha256(text_out),
            "flags": flags,
        }
        rows.append(row)
    assert not rows or tuple(rows[0]) == COLUMNS, "every column of the record store, in its order"
    return rows


def _texts(rng: np.random.Generator, vocabulary: list[str], words: np.ndarray) -> list[str]:
    # Two in five words from the topic: enough that a topic shows, as in real prompts
    total = int(words.sum())
    topic = rng.random(total) < 0.4
    picked = np.where(topic, rng.choice(vocabulary, total), rng.choice(_COMMON, total)).tolist()
    ends = np.cumsum(words).tolist()
    return [" ".join(picked[end - count : end]) for end, count in zip(ends, words.tolist(), strict=True)]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
