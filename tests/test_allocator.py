"""The allocator tuning the proxy and ingest processes apply: large bodies reuse freed memory
instead of being page-faulted in afresh each time (counted in page faults, not timed)."""

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
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


def test_large_bodies_reuse_freed_memory() -> None:
    applied, tuned = _faults("tuned")
    assert applied == "True"  # glibc here
    _, default = _faults("default")
    # default glibc: each 1 MB buffer is mmapped and faulted in (~250 faults per body)
    assert default > 200 * 100
    assert tuned < 200 * 5
