"""`common_prefix`, what is left of the re-sent-history splicing (taken out: parsing each body
whole was fast enough). Nothing in tracetap uses it; tests/ingest/test_pool.py still tests it.
"""

from __future__ import annotations

__all__ = ["common_prefix"]


def common_prefix(
    a: bytes, start: int, b: bytes | bytearray | memoryview, n: int, hint: int = 0
) -> int:
    """How many of the first `n` bytes of `b` `a` holds at `start`, by bisection (one C
    comparison a step); `hint`, a guess, is tried first (exact: no bisection)."""
    with memoryview(b) as view:  # released on return: a bytearray can grow again
        same, differs = 0, n  # a holds b[:same] at start, not b[:differs]
        if 0 < hint < n:
            if not a.startswith(view[:hint], start):
                differs = hint
            elif start + hint >= len(a) or a[start + hint] != b[hint]:
                return hint
            else:
                same = hint + 1
        if differs == n and a.startswith(view[same:n], start + same):
            return n
        while differs - same > 1:
            mid = (same + differs) // 2
            if a.startswith(view[same:mid], start + same):
                same = mid
            else:
                differs = mid
        return same
