"""The malloc arena cap (glibc, as on the platform's hosts and images)."""

from __future__ import annotations

import platform
import threading

import pytest

from llmops.memory import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's arena cap is glibc's")
def test_the_cap_applies_and_threads_started_after_it_allocate_as_usual():
    assert limit_malloc_arenas(2) is True
    sizes = []

    def allocate():
        sizes.append(len(bytearray(8 * 1024 * 1024)))

    threads = [threading.Thread(target=allocate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sizes == [8 * 1024 * 1024] * 4


def test_no_arena_at_all_is_refused():
    with pytest.raises(ValueError, match="at least one arena"):
        limit_malloc_arenas(0)
