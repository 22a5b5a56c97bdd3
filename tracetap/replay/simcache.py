"""serve-sim's prefix cache: chained block hashes of a prompt and a capacity-bounded block store.

Kept behind one small interface (`PrefixCache`: lookup/insert) so the analysis simulator's cache
can replace `BlockCache` later without touching the server.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = ["POLICIES", "BlockCache", "PrefixCache", "block_hashes"]

POLICIES = ("lru", "fifo")


def block_hashes(
    tokens: Sequence[int] | np.ndarray, block_size: int, known: Sequence[bytes] = ()
) -> list[bytes]:
    """vLLM-style chained hashes of the prompt's full blocks: each names its whole prefix.

    `known`: the hashes of the leading full blocks already computed (e.g. a prompt's, when
    hashing prompt + output), reused rather than hashed again."""
    arr = np.asarray(tokens, dtype=np.int64)
    out: list[bytes] = list(known[: len(arr) // block_size])
    prev = out[-1] if out else b""
    for start in range(len(out) * block_size, len(arr) - block_size + 1, block_size):
        prev = hashlib.blake2b(
            prev + arr[start : start + block_size].tobytes(), digest_size=16
        ).digest()
        out.append(prev)
    return out


class PrefixCache(Protocol):
    """What serve-sim needs from a prefix cache."""

    def lookup(self, block_hashes: Sequence[bytes], now: float) -> int:
        """Number of leading blocks present (and touched) at time `now`."""

    def insert(self, block_hashes: Sequence[bytes], now: float) -> None:
        """Store the blocks at time `now`, evicting as needed."""


class BlockCache:
    """Blocks keyed by chained hash; `capacity` blocks (0 = unbounded), LRU or FIFO eviction,
    and an optional idle TTL in seconds after which a block no longer hits."""

    def __init__(self, capacity: int = 0, policy: str = "lru", ttl: float | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity, self.policy, self.ttl = capacity, policy, ttl
        self._blocks: OrderedDict[bytes, float] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup(self, block_hashes: Sequence[bytes], now: float) -> int:
        hits = 0
        for h in block_hashes:
            seen = self._blocks.get(h)
            if seen is None:
                break
            if self.ttl is not None and now - seen > self.ttl:
                del self._blocks[h]
                break
            hits += 1
        if self.policy == "lru":
            for h in block_hashes[:hits]:
                self._blocks[h] = now
                self._blocks.move_to_end(h)
        return hits

    def insert(self, block_hashes: Sequence[bytes], now: float) -> None:
        for h in block_hashes:
            if h in self._blocks:
                if self.policy == "lru":
                    self._blocks[h] = now
                    self._blocks.move_to_end(h)
                continue
            self._blocks[h] = now
        if self.capacity:
            while len(self._blocks) > self.capacity:
                self._blocks.popitem(last=False)
                self.evictions += 1
