"""Process memory settings (glibc's malloc, through ``mallopt``).

glibc gives threads that allocate at the same time arenas of their own (up to 8 per core), and memory freed in one
arena is not reused by another; and once a large buffer (a megabyte or more) has been freed, it raises the size from
which it maps buffers apart, so the next large ones come from the arenas, where freed memory stays resident. A service
whose threads take turns with large buffers (receiving an upload, merging blocks, uploading parts) then holds tens of
megabytes more than it uses. Capping the arenas (a little allocator contention, which the interpreter lock mostly
prevents anyway) and fixing the mapping size (large buffers map and unmap: a few page faults each) give that back.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
M_ARENA_MAX = -8


def _libc():
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def release_free_memory() -> bool:
    """Hand the pages malloc holds free, in every arena, back to the system (glibc's ``malloc_trim(0)``): for after
    a large piece of work, so that the next starts from what the process uses, not what it once used. Whether any
    memory was released (False on other C libraries)."""
    trim = getattr(_libc(), "malloc_trim", None)
    return trim is not None and trim(0) == 1


def tune_malloc(*, arenas: int | None = None, mmap_threshold: int | None = None) -> bool:
    """For allocations from now on: let threads share at most ``arenas`` malloc arenas (``MALLOC_ARENA_MAX``), and
    map buffers of ``mmap_threshold`` bytes or more apart, always (``MALLOC_MMAP_THRESHOLD_``; glibc allows up to
    32 MiB). Whether it applied: not on other C libraries. None leaves a setting as it is."""
    if arenas is not None and arenas < 1:
        raise ValueError("at least one arena")
    if mmap_threshold is not None and not 0 < mmap_threshold <= 32 * 1024 * 1024:
        raise ValueError("the mmap threshold is a positive size of at most 32 MiB")
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    applied = True
    if arenas is not None:
        applied &= mallopt(M_ARENA_MAX, arenas) == 1
    if mmap_threshold is not None:
        applied &= mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    return applied
