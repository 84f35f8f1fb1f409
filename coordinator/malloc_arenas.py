"""Fewer malloc arenas for a process of many threads.

glibc gives each thread that allocates under contention an arena of its own, up to eight
per core, and memory freed in one arena is not reused by another: a coordinator of some
twenty busy threads grows its RSS with fragments nobody uses. Two arenas keep it near
what Python really holds, at no cost measured on the order path. ``MALLOC_ARENA_MAX`` in
the environment, read by glibc itself, wins over this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["limit_malloc_arenas", "release_free_memory"]

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def release_free_memory() -> bool:
    """Hand the pages malloc holds free back to the system (glibc's ``malloc_trim``),
    after a burst of large buffers freed at once (an hour of ids read back at a start):
    glibc raises its mmap threshold once such a buffer is freed, so the next ones come
    from the heap, where their pages stay when they are freed. Whether it was done."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return bool(trim(0))


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's arenas at ``arenas`` for this process, before its threads start;
    whether it was done (not on another C library, nor when the environment says)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_ARENA_MAX, arenas))
    logger.debug("malloc arenas capped at %d: %s", arenas, done)
    return done
