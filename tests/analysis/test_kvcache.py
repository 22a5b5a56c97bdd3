"""KV-cache simulators: hits, eviction order, TTL refresh and idle-storage accounting by hand."""

from __future__ import annotations

import random

import pytest

from tracetap.analysis.kvcache import BlockCache, ChainCache, Policy, chain_hashes


def test_lru_capacity_evicts_least_recent_chain_tail_first():
    c = BlockCache(4, 16, Policy("lru"))
    assert c.lookup_and_insert([1, 2, 3], 0.0) == 0
    assert c.lookup_and_insert([7, 8], 1.0) == 0  # full: evicts block 3 (tail of the older chain)
    assert c.lookup_and_insert([1, 2, 3], 2.0) == 2
    # idle: 3 held 0->1 (evicted), 1 and 2 held 0->2, then 8 evicted at 2 (idle 1 s)... total
    assert c.idle_block_seconds == pytest.approx(1.0 + 2.0 + 2.0 + 1.0)


def test_ttl_expires_unless_refreshed():
    c = BlockCache(None, 16, Policy("ttl", 10.0))
    c.lookup_and_insert([1, 2], 0.0)
    assert c.lookup_and_insert([1, 2, 3], 9.0) == 2  # within TTL: hit, refreshed to 19
    assert c.lookup_and_insert([1, 2, 3], 19.0) == 3  # exactly at the deadline still a hit
    assert c.lookup_and_insert([1, 2, 3], 29.5) == 0  # expired at 29
    c.finish(100.0)
    # idle: 2×9 + (2+1)×10 + 3×10 (expired at 29) + 3×10 (until the final deadline 39.5)
    assert c.idle_block_seconds == pytest.approx(18 + 30 + 30 + 30)


def test_keep_policy_uses_caller_deadline():
    c = BlockCache(None, 16, Policy("keep"))
    c.lookup_and_insert([1], 0.0, keep_until=5.0)
    assert c.lookup_and_insert([1], 4.0, keep_until=4.0) == 1
    assert c.lookup_and_insert([1], 6.0) == 0


@pytest.mark.parametrize("policy", [Policy("lru"), Policy("ttl", 30.0), Policy("keep")])
@pytest.mark.parametrize("capacity", [None, 40, 200])
def test_chain_cache_matches_block_cache_on_growing_chains(policy, capacity):
    rng = random.Random(7)
    exact = BlockCache(capacity, 16, policy)
    fast = ChainCache(capacity, 16, policy)
    lengths = {s: rng.randint(1, 10) for s in range(5)}
    now = 0.0
    for _ in range(300):
        now += rng.expovariate(1 / 8.0)
        s = rng.randrange(5)
        common = lengths[s]
        lengths[s] += rng.randint(0, 6)
        keep = now + rng.uniform(0, 40)
        h = exact.lookup_and_insert(chain_hashes(s, lengths[s]), now, keep_until=keep)
        f = fast.access(s, common, lengths[s], now, keep_until=keep)
        assert h == f
    exact.finish(now)
    fast.finish(now)
    assert fast.idle_block_seconds == pytest.approx(exact.idle_block_seconds)
