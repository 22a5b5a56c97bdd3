"""KV-cache simulators: an exact block cache (hash per block) and a fast per-session chain cache.

Both evict least-recently-used first (a request's blocks tail-first, like vLLM), expire on a
per-entry deadline (TTL refreshed on every hit, or a caller-chosen keep-until), and account idle
storage: block-seconds a block sits cached between its last use and its next use or eviction.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["Policy", "BlockCache", "ChainCache", "chain_hashes"]


@dataclass(frozen=True)
class Policy:
    """Eviction policy: `lru` (capacity only), `ttl` (deadline = last use + ttl_s, refreshed on
    hit) or `keep` (deadline given per access by the caller, e.g. from a tool-latency forecast)."""

    kind: str = "lru"
    ttl_s: float | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.kind == "ttl" and self.ttl_s is not None:
            return f"ttl-{_dur(self.ttl_s)}"
        return self.kind

    def deadline(self, now: float, keep_until: float | None) -> float:
        if self.kind == "ttl":
            return now + float(self.ttl_s or 0.0)
        if self.kind == "keep":
            return now if keep_until is None else max(now, keep_until)
        return math.inf


def _dur(s: float) -> str:
    return f"{s / 3600:g}h" if s >= 3600 else f"{s / 60:g}m" if s >= 60 else f"{s:g}s"


def chain_hashes(key: Hashable, n_blocks: int, *, start: int = 0) -> list[int]:
    """Synthetic per-session hash chain: block i of `key`'s sequence (same key+i = same block)."""
    return [hash((key, i)) for i in range(start, n_blocks)]


class BlockCache:
    """Exact cache of blocks identified by hash (prefix-chained hashes, as vLLM computes them).

    `lookup_and_insert(hashes, now)` returns how many leading blocks were cached, then caches all
    of them (evicting LRU blocks when full). `capacity_blocks=None` means unbounded.
    """

    def __init__(self, capacity_blocks: int | None, block_size: int, policy: Policy) -> None:
        self.capacity = capacity_blocks
        self.block_size = block_size
        self.policy = policy
        self._blocks: OrderedDict[Hashable, list[float]] = OrderedDict()  # hash -> [last, deadline]
        self._expiry: list[tuple[float, int, Hashable]] = []
        self._seq = 0
        self.idle_block_seconds = 0.0
        self.hit_blocks = 0
        self.lookup_blocks = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            deadline, _, h = heapq.heappop(self._expiry)
            entry = self._blocks.get(h)
            if entry is not None and entry[1] == deadline:
                del self._blocks[h]
                self.idle_block_seconds += deadline - entry[0]

    def lookup_and_insert(
        self, block_hashes: Sequence[Hashable], now: float, *, keep_until: float | None = None
    ) -> int:
        """Count the cached leading blocks of `block_hashes`, then cache them all at `now`."""
        self._expire(now)
        hits = 0
        for h in block_hashes:
            if h not in self._blocks:
                break
            hits += 1
        deadline = self.policy.deadline(now, keep_until)
        for h in reversed(block_hashes):  # tail first, so the chain's root is the most recent
            entry = self._blocks.get(h)
            if entry is not None:
                self.idle_block_seconds += now - entry[0]
                self._blocks.move_to_end(h)
                entry[0], entry[1] = now, deadline
            else:
                if self.capacity is not None and len(self._blocks) >= self.capacity:
                    if self.capacity == 0:
                        continue
                    old, (last, _) = self._blocks.popitem(last=False)
                    self.idle_block_seconds += now - last
                self._blocks[h] = [now, deadline]
            if deadline != math.inf:
                self._seq += 1
                heapq.heappush(self._expiry, (deadline, self._seq, h))
        self.hit_blocks += hits
        self.lookup_blocks += len(block_hashes)
        return hits

    def finish(self, now: float) -> None:
        """Close idle accounting at the end of the trace (blocks idle until expiry or `now`)."""
        for last, deadline in self._blocks.values():
            self.idle_block_seconds += min(deadline, now) - last if deadline > last else 0.0
        self._blocks.clear()
        self._expiry.clear()


class ChainCache:
    """Per-session chains in O(log sessions) per access: a session's cached blocks are always a
    prefix of its sequence, so its state is (cached blocks, last use, deadline).

    `access(key, common_blocks, n_blocks, now)` -> hit blocks (= min(cached, common)); then the
    first `n_blocks` of the (new) chain are cached. Blocks past `common_blocks` belong to an
    abandoned branch and are freed at once.
    """

    def __init__(self, capacity_blocks: int | None, block_size: int, policy: Policy) -> None:
        self.capacity = capacity_blocks
        self.block_size = block_size
        self.policy = policy
        self._state: dict[Hashable, list[float]] = {}  # key -> [blocks, last, deadline, version]
        self._lru: list[tuple[float, int, Hashable]] = []
        self._exp: list[tuple[float, int, Hashable]] = []
        self.used = 0
        self.idle_block_seconds = 0.0
        self.hit_blocks = 0
        self.lookup_blocks = 0

    def _drop(self, key: Hashable, st: list[float], blocks: int, at: float) -> None:
        self.idle_block_seconds += blocks * max(0.0, at - st[1])
        st[0] -= blocks
        self.used -= blocks

    def _expire(self, now: float) -> None:
        while self._exp and self._exp[0][0] < now:
            deadline, ver, key = heapq.heappop(self._exp)
            st = self._state.get(key)
            if st is not None and st[3] == ver and st[0] > 0:
                self._drop(key, st, int(st[0]), deadline)

    def _make_room(self, need: int, now: float, me: Hashable) -> None:
        while self.used + need > (self.capacity or 0) and self._lru:
            last, ver, key = self._lru[0]
            st = self._state.get(key)
            if st is None or st[3] != ver or st[0] <= 0 or key == me:
                heapq.heappop(self._lru)
                continue
            take = min(int(st[0]), self.used + need - (self.capacity or 0))
            self._drop(key, st, take, now)
            if st[0] <= 0:
                heapq.heappop(self._lru)

    def access(
        self,
        key: Hashable,
        common_blocks: int,
        n_blocks: int,
        now: float,
        *,
        keep_until: float | None = None,
    ) -> int:
        self._expire(now)
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = [0, now, now, 0]
        hits = int(min(st[0], common_blocks))
        # blocks of the shared prefix are reused; anything past it is an abandoned branch
        self._drop(key, st, int(st[0]) - hits, now)
        self.idle_block_seconds += hits * max(0.0, now - st[1])
        self.used -= hits
        st[0] = 0
        want = n_blocks
        if self.capacity is not None:
            want = min(want, self.capacity)
            self._make_room(want, now, key)
            want = min(want, self.capacity - self.used)
        st[0] = want
        self.used += want
        st[1] = now
        st[2] = self.policy.deadline(now, keep_until)
        st[3] += 1
        if self.capacity is not None:
            heapq.heappush(self._lru, (now, int(st[3]), key))
        if st[2] != math.inf:
            heapq.heappush(self._exp, (st[2], int(st[3]), key))
        self.hit_blocks += hits
        self.lookup_blocks += n_blocks
        return hits

    def finish(self, now: float) -> None:
        for st in self._state.values():
            if st[0] > 0:
                self.idle_block_seconds += st[0] * max(0.0, min(st[2], now) - st[1])
        self._state.clear()
        self.used = 0
