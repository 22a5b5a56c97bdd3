"""The bounded index of block hashes seen in any session (hash -> uid of the first round with
it), least recently used first out; each round's lookups and refreshes run as C-level bulk steps.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from itertools import repeat

__all__ = ["BlockIndex"]


class BlockIndex:
    """An LRU over block hashes: a round's known leading blocks move to the end in order, its
    other blocks are added (a block already known further on keeps its place)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._owner: OrderedDict[Hashable, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owner)

    def __contains__(self, h: Hashable) -> bool:
        return h in self._owner

    def reuse(self, hashes: Sequence[Hashable], uid: str) -> tuple[int, str | None]:
        """(leading blocks already known, the uid that first had the last of them); refreshes
        those, records the rest as first seen in `uid`, then evicts down to the limit."""
        owner = self._owner
        present = list(map(owner.__contains__, hashes))
        n = present.index(False) if False in present else len(present)
        any_uid = owner[hashes[n - 1]] if n else None
        deque(map(owner.move_to_end, hashes[:n]), maxlen=0)  # shared prefixes stay while reused
        owner.update(zip(hashes[n:], repeat(uid)))
        while len(owner) > self.limit:
            owner.popitem(last=False)
        return n, any_uid
