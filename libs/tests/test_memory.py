"""Tuning glibc's malloc (as on the platform's hosts and images)."""

from __future__ import annotations

import platform
import subprocess
import sys
import threading

import pytest

from llmops.memory import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="these are glibc's mallopt settings")
def test_the_settings_apply_and_threads_allocate_as_usual_after_them():
    assert tune_malloc(arenas=2, mmap_threshold=1024 * 1024) is True
    sizes = []

    def allocate():
        sizes.extend(len(bytearray(size)) for size in (100, 2 * 1024 * 1024, 8 * 1024 * 1024))

    threads = [threading.Thread(target=allocate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sizes) == sorted([100, 2 * 1024 * 1024, 8 * 1024 * 1024] * 4)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"arenas": 0}, "at least one arena"), ({"mmap_threshold": 64 * 1024 * 1024}, "at most 32 MiB")],
)
def test_impossible_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        tune_malloc(**settings)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_goes_back_to_the_system():
    # In an interpreter of its own: the test process's heap, after thousands of tests, may hold free space and settings
    # that decide where the pieces land, and the mmap threshold set here must not leak into the tests after this one.
    done = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    released, before, after = done.stdout.split()
    assert released == "True"
    assert int(after) < int(before) - 16 * 1024  # a good part of the 64 MiB came back with the trim


TRIM_PROBE = """
from llmops.memory import release_free_memory, tune_malloc

def resident_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

tune_malloc(mmap_threshold=32 * 1024 * 1024)  # 1 MiB pieces then come from the heap
pieces, pins = [], []
for _ in range(64):
    pieces.append(bytearray(b"x" * 1024 * 1024))  # written: resident
    pins.append(bytearray(b"y" * 64 * 1024))  # after each piece: free() cannot give it back by shrinking
del pieces
freed = resident_kib()  # what free() could not give back is still resident, held by malloc
released = release_free_memory()
print(released, freed, resident_kib())
"""
