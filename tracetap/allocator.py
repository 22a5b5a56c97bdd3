"""Allocator and collector tuning for tracetap's long-running processes (the proxy and its
ingest processes).

Agent requests are 100 kB to MBs each; by default glibc returns such freed memory to the OS at
once and page-faults it in again for the next body, which costs more than the copy itself.
Ingest keeps each round's parsed content in caches for the next rounds; with Python's default
thresholds the collector runs every 700 containers kept, and its older passes rescan the caches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

__all__ = [
    "MMAP_THRESHOLD",
    "TOP_PAD",
    "TRIM_THRESHOLD",
    "YOUNG_OBJECTS",
    "collect_less",
    "keep_freed_memory",
]

# glibc mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD, TRIM_THRESHOLD, TOP_PAD = 16 << 20, 64 << 20, 32 << 20
YOUNG_OBJECTS = 50_000


def keep_freed_memory(
    *,
    mmap_threshold: int = MMAP_THRESHOLD,
    trim_threshold: int = TRIM_THRESHOLD,
    top_pad: int = TOP_PAD,
) -> bool:
    """Serve allocations up to `mmap_threshold` from the heap and keep up to `trim_threshold`
    of freed heap for reuse, so a 1 MB body costs a copy rather than 256 page faults. The
    memory kept is reused by the next body (RSS stays flat at the working set plus at most
    the trim threshold). Returns False where there is no glibc (nothing changed)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl, macOS: nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(param, int(value)) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim_threshold),
            (_M_TOP_PAD, top_pad),
        )
    )


def collect_less(young: int = YOUNG_OBJECTS) -> None:
    """Run the cyclic garbage collector less often in an ingest process: what exists at start
    (modules, compiled rules, the tokenizer) is frozen out of every collection, and a young
    collection waits until `young` more containers are alive than at the last one, not 700.
    Cycles are still collected (the older generations keep their ratios to the young one);
    the collector just rescans ingest's long-lived caches far less often."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, older, oldest)
