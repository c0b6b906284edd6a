"""Anonymous refusals counted, not recorded one by one: a flood of requests without a valid token must not fill the
append-only audit log. Each source's 401s of a window become one ``security.access.denied`` event carrying the count
(the other fields are those of the window's first refusal). Authenticated refusals (403, or 401 of a known
principal) stay one event each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from llmops.logging import get_logger
from llmops_schemas.events import AccessDenied

log = get_logger(__name__)

ANONYMOUS_DENIALS = Counter("llmops_anonymous_denials", "Anonymous requests refused (401)", ["service"])

#: Sources tracked in one window at most; the rest of a window's sources are counted under one "other" source.
MAX_SOURCES = 10_000
OTHER_SOURCES = "other"

#: Records one denial event: the denial, the event's subject and the correlation id.
Record = Callable[[AccessDenied, str, str | None], Awaitable[None]]


class AnonymousDenials:
    """Counts anonymous refusals per source; :meth:`flush` records each source's count as one event."""

    def __init__(self, record: Record, *, window_seconds: int) -> None:
        self.record = record
        self.window_seconds = window_seconds
        self._first: dict[str, tuple[AccessDenied, str | None]] = {}
        self._counts: dict[str, int] = {}

    def add(self, denial: AccessDenied, correlation_id: str | None = None) -> None:
        source = denial.source or "unknown"
        if source not in self._counts and len(self._counts) >= MAX_SOURCES:
            source = OTHER_SOURCES
        self._first.setdefault(source, (denial, correlation_id))
        self._counts[source] = self._counts.get(source, 0) + 1
        ANONYMOUS_DENIALS.labels(denial.service).inc()

    async def flush(self) -> int:
        """Record one event per source counted since the last flush; returns how many events."""
        first, counts = self._first, self._counts
        self._first, self._counts = {}, {}
        for source, (denial, correlation_id) in first.items():
            update = {"count": counts[source], "window_seconds": self.window_seconds}
            if source == OTHER_SOURCES:
                update["source"] = OTHER_SOURCES
            await self.record(denial.model_copy(update=update), "anonymous", correlation_id)
        return len(first)

    async def run(self) -> None:
        """Flush once a window, for the service's lifetime (a failed flush is logged; its counts are lost)."""
        while True:
            await asyncio.sleep(self.window_seconds)
            try:
                await self.flush()
            except Exception:
                log.exception("auth.denials.flush_failed")
