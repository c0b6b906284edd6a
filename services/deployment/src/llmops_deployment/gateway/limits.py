"""Requests and tokens per minute, per API key and per project, for one gateway replica.

Rate limits smooth traffic; they are counted in memory per replica over a sliding minute (sixty one-second buckets),
so N replicas admit up to N times a limit (run limits at a replica's share, or rely on budgets, which are exact across
replicas). A request is counted when admitted with the tokens it may use at most; the real count replaces that
estimate once the answer is known.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_SECONDS = 60


class RateLimited(Exception):
    """Over a requests- or tokens-per-minute limit: the client should wait ``retry_after`` seconds."""

    def __init__(self, scope: str, limit: str, retry_after: float) -> None:
        super().__init__(f"{scope} is over its {limit} limit; retry after {math.ceil(retry_after)} s")
        self.scope = scope
        self.limit = limit
        self.retry_after = retry_after


@dataclass
class _Window:
    """Counts per one-second bucket over the last minute: ``buckets`` maps a second to [requests, tokens]."""

    buckets: dict[int, list[int]] = field(default_factory=dict)

    def _trim(self, now: int) -> None:
        if len(self.buckets) > WINDOW_SECONDS or (self.buckets and min(self.buckets) <= now - WINDOW_SECONDS):
            for second in [s for s in self.buckets if s <= now - WINDOW_SECONDS]:
                del self.buckets[second]

    def totals(self, now: int) -> tuple[int, int]:
        self._trim(now)
        requests = tokens = 0
        for count, used in self.buckets.values():
            requests += count
            tokens += used
        return requests, tokens

    def add(self, now: int, requests: int, tokens: int) -> None:
        bucket = self.buckets.setdefault(now, [0, 0])
        bucket[0] += requests
        bucket[1] += tokens

    def wait_for(self, now: int, index: int, excess: int) -> float:
        """Seconds until the oldest buckets holding ``excess`` of column ``index`` leave the window."""
        freed = 0
        for second in sorted(self.buckets):
            freed += self.buckets[second][index]
            if freed >= excess:
                return float(second + WINDOW_SECONDS - now)
        return float(WINDOW_SECONDS)


class RateLimiter:
    """Per-key and per-project requests/min and tokens/min; a limit of ``None`` or 0 is none (the settings' defaults
    apply where a key or project sets nothing)."""

    def __init__(
        self, default_rpm: int = 0, default_tpm: int = 0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._default_rpm = default_rpm
        self._default_tpm = default_tpm
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def _window(self, kind: str, name: str) -> _Window:
        window = self._windows.get((kind, name))
        if window is None:
            window = self._windows[(kind, name)] = _Window()
        return window

    def admit(
        self,
        *,
        project: str,
        key_id: str | None,
        key_rpm: int | None,
        key_tpm: int | None,
        project_rpm: int | None,
        project_tpm: int | None,
        tokens: int,
    ) -> int:
        """Count one request that may use ``tokens``, or raise :class:`RateLimited` (then nothing is counted).
        Returns the second it was counted in, for :meth:`record_tokens`."""
        now = int(self._clock())
        checks = [("project", project, project_rpm or self._default_rpm, project_tpm or self._default_tpm)]
        if key_id is not None:
            checks.append(("key", key_id, key_rpm or self._default_rpm, key_tpm or self._default_tpm))
        admitted = []
        for kind, name, rpm, tpm in checks:
            if not rpm and not tpm:
                continue
            window = self._window(kind, name)
            requests, used = window.totals(now)
            if rpm and requests + 1 > rpm:
                raise RateLimited(f"{kind} {name}", "requests-per-minute", window.wait_for(now, 0, requests + 1 - rpm))
            if tpm and used + tokens > tpm:
                wait = window.wait_for(now, 1, used + tokens - tpm) if tokens <= tpm else float(WINDOW_SECONDS)
                raise RateLimited(f"{kind} {name}", "tokens-per-minute", wait)
            admitted.append(window)
        for window in admitted:
            window.add(now, 1, tokens)
        return now

    def record_tokens(self, *, project: str, key_id: str | None, at: int, admitted: int, used: int) -> None:
        """Replace the most tokens a request was admitted with (``admitted``, in second ``at``) by what it used."""
        for kind, name in (("project", project), ("key", key_id)):
            window = self._windows.get((kind, name)) if name is not None else None
            bucket = window.buckets.get(at) if window is not None else None
            if bucket is not None:
                bucket[1] += used - admitted
