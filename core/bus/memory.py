"""Giving the memory of large queued messages back to the operating system (glibc only).

libzmq allocates each message body with ``malloc``. glibc serves large blocks with ``mmap`` at
first, but after the first such block is freed it raises its threshold to that block's size
and later blocks come from the heap, where freed memory stays in the process: a router that
queued 400 MB for a subscriber that never read kept those 400 MB after the subscriber left.

:func:`tune_allocator` fixes the threshold (blocks of 128 KiB and more are always mapped, so
freeing them unmaps them at once); :func:`return_freed_memory` asks glibc to hand back free
heap pages (``malloc_trim``). Both do nothing where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

#: glibc's ``mallopt`` parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks at least this large are mapped on their own and unmapped when freed.
MMAP_THRESHOLD = 128 * 1024

_lock = threading.Lock()
_libc: ctypes.CDLL | None = None
_tuned = False


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
        except OSError:
            lib = None
        if lib is None or not hasattr(lib, "malloc_trim") or not hasattr(lib, "mallopt"):
            return None
        lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.malloc_trim.argtypes = [ctypes.c_size_t]
        _libc = lib
    return _libc


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold for this process (once); returns True when it was set."""
    global _tuned
    with _lock:
        if _tuned:
            return True
        lib = _glibc()
        if lib is None:
            return False
        _tuned = bool(lib.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            lib.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))
        return _tuned


def return_freed_memory() -> bool:
    """Hand free heap memory back to the operating system; returns True if glibc released some."""
    lib = _glibc()
    return bool(lib.malloc_trim(0)) if lib is not None else False
