"""Process memory settings.

glibc gives threads that allocate at the same time arenas of their own (up to 8 per core), and memory freed in one
arena is not reused by another: a service whose threads take turns with large buffers (receiving an upload, merging
blocks, uploading parts) holds tens of megabytes more than it uses. Capping the arenas trades a little allocator
contention, which the interpreter lock mostly prevents anyway, for that memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


def limit_malloc_arenas(arenas: int) -> bool:
    """Let threads created from now on share at most ``arenas`` malloc arenas (glibc's ``M_ARENA_MAX``, what the
    ``MALLOC_ARENA_MAX`` environment variable sets at start-up); whether it applied (it does not on other C
    libraries)."""
    if arenas < 1:
        raise ValueError("at least one arena")
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    return mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1
