"""serve-sim's block cache: chained hashes, leading-prefix lookup, LRU/FIFO eviction, TTL."""

from __future__ import annotations

import pytest

from tracetap.replay.simcache import BlockCache, block_hashes


def test_hashes_are_chained_and_cover_full_blocks_only() -> None:
    a = block_hashes(list(range(10)), 4)
    b = block_hashes([0, 1, 2, 3, 9, 9, 9, 9, 1], 4)
    assert len(a) == 2 and len(b) == 2
    assert a[0] == b[0] and a[1] != b[1]
    # Same second block after a different first block: a different hash (chained).
    c = block_hashes([7, 7, 7, 7, 4, 5, 6, 7], 4)
    d = block_hashes([0, 1, 2, 3, 4, 5, 6, 7], 4)
    assert c[1] != d[1]


def test_lookup_counts_leading_hits_only() -> None:
    cache = BlockCache()
    cache.insert([b"a", b"b"], 0.0)
    assert cache.lookup([b"a", b"b", b"c"], 1.0) == 2
    assert cache.lookup([b"x", b"b"], 1.0) == 0


def test_lru_keeps_recently_used_fifo_does_not() -> None:
    lru, fifo = BlockCache(2, "lru"), BlockCache(2, "fifo")
    for cache in (lru, fifo):
        cache.insert([b"a"], 0.0)
        cache.insert([b"b"], 1.0)
        assert cache.lookup([b"a"], 2.0) == 1
        cache.insert([b"c"], 3.0)
    assert lru.lookup([b"a"], 4.0) == 1 and lru.lookup([b"b"], 4.0) == 0
    assert fifo.lookup([b"a"], 4.0) == 0 and fifo.lookup([b"b"], 4.0) == 1
    assert lru.evictions == fifo.evictions == 1


def test_ttl_expires_idle_blocks() -> None:
    cache = BlockCache(ttl=10.0)
    cache.insert([b"a", b"b"], 0.0)
    assert cache.lookup([b"a", b"b"], 5.0) == 2
    assert cache.lookup([b"a", b"b"], 14.0) == 2  # touched at 5 s
    assert cache.lookup([b"a"], 30.0) == 0


def test_bad_policy_rejected() -> None:
    with pytest.raises(ValueError):
        BlockCache(policy="random")


def test_hashes_extend_known_leading_blocks() -> None:
    # Prompt + output hashed from the prompt's hashes: the same as hashing it all at once.
    prompt, output = list(range(40)), list(range(100, 125))
    known = block_hashes(prompt, 16)
    assert block_hashes(prompt + output, 16, known) == block_hashes(prompt + output, 16)
    assert len(block_hashes(prompt + output, 16, known)) == 4
