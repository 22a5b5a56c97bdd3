"""The bounded index of block hashes seen in any session (hash -> uid of the first round with
it): two generations, so a round costs lookups in proportion to the log of its prompt's blocks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import repeat

__all__ = ["BlockIndex"]


class BlockIndex:
    """Block hashes in two generations: `young` holds those used since the last turn-over,
    `old` those used in the generation before. When `young` would pass half the limit, it
    becomes `old` and the old generation is dropped, so what is evicted is what has not been
    used for longest (a two-generation LRU; nothing is evicted below the limit).

    Hashes are chained (a block's hash covers every block before it), so a round that has
    block i has every block before it, and so does the index: a block is only added or
    kept together with its prefix. The known prefix of a prompt is therefore found by
    bisection, and only blocks that change generation or are new cost a write.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._young: dict[Hashable, str] = {}
        self._old: dict[Hashable, str] = {}

    def __len__(self) -> int:
        return len(self._young) + sum(1 for h in self._old if h not in self._young)

    def __contains__(self, h: Hashable) -> bool:
        return h in self._young or h in self._old

    def reuse(
        self, hashes: Sequence[Hashable], uid: str, guess: int | None = None
    ) -> tuple[int, str | None]:
        """(leading blocks already known, the uid that first had the last of them); keeps
        those in the young generation and records the rest as first seen in `uid`. `guess`:
        how many are likely known (the blocks the session's previous prompt had), checked
        first."""
        young, old = self._young, self._old
        n = _leading(hashes, lambda h: h in young or h in old, len(hashes), guess)
        y = _leading(hashes, young.__contains__, n, n)
        first = [young.get(h) or old.get(h) or uid for h in hashes[y:n]]
        any_uid = (first[-1] if y < n else young[hashes[n - 1]]) if n else None
        if len(young) + len(hashes) - y > self.limit // 2:  # turn over: young becomes old
            kept = dict(zip(hashes[:y], map(young.__getitem__, hashes[:y])))
            self._old, self._young = young, kept
            young = kept
        young.update(zip(hashes[y:n], first))
        young.update(zip(hashes[n:], repeat(uid)))
        return n, any_uid


def _leading(hashes: Sequence[Hashable], known: object, hi: int, guess: int | None = None) -> int:
    """How many of the first `hi` hashes are `known`, by bisection (the known ones form a
    prefix); a `guess` is checked first (two lookups when it is right)."""
    lo = 0
    if guess is not None and 0 <= guess <= hi:
        if guess == 0 or known(hashes[guess - 1]):  # type: ignore[operator]
            if guess == hi or not known(hashes[guess]):  # type: ignore[operator]
                return guess
            lo = guess + 1  # more are known: bisect above it
        else:
            hi = guess - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if known(hashes[mid - 1]):  # type: ignore[operator]
            lo = mid
        else:
            hi = mid - 1
    return lo
