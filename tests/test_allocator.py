"""The allocator tuning the proxy and ingest processes apply: large bodies reuse freed memory
instead of being page-faulted in afresh each time (counted in page faults, not timed); the
collector tuning of ingest processes: far fewer collections, cycles still reclaimed."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import pickle, resource, sys
from tracetap.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
body = b"x" * 1_000_000
for _ in range(5):
    pickle.dumps(body)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    pickle.dumps(body)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


def test_large_bodies_reuse_freed_memory() -> None:
    applied, tuned = _faults("tuned")
    assert applied == "True"  # glibc here
    _, default = _faults("default")
    # default glibc: each 1 MB buffer is mmapped and faulted in (~250 faults per body)
    assert default > 200 * 100
    assert tuned < 200 * 5


GC_PROBE = """
import gc, sys, weakref
from tracetap.allocator import collect_less
if sys.argv[1] == "tuned":
    collect_less()
runs = []
gc.callbacks.append(lambda phase, info: phase == "start" and runs.append(info["generation"]))
class Node:
    pass
first = Node()
first.me = first  # a cycle: only the collector frees it
gone = weakref.ref(first)
del first
kept = []
for i in range(300_000):  # caches filling with the rounds' content, as ingest's do
    kept.append([i])
print(len(runs), gone() is None)
"""


def _collections(mode: str) -> tuple[int, bool]:
    out = subprocess.run(
        [sys.executable, "-c", GC_PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), out[1] == "True"


def test_ingest_processes_collect_less_but_still_reclaim_cycles() -> None:
    default, default_freed = _collections("default")
    tuned, tuned_freed = _collections("tuned")
    assert default_freed and tuned_freed  # the cycle went without an explicit gc.collect()
    assert default > 300  # one collection every 700 new containers
    assert tuned < default / 20
