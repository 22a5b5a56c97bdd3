"""`mooncake`: JSONL {timestamp, input_length, output_length, hash_ids} as read by AIPerf,
SGLang bench_serving and Dynamo (ms since the first request, block hash ids renumbered from 0).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from typing import IO, Any

import numpy as np

from tracetap.tracelab import parse_ts

__all__ = ["export", "request_time", "row_block_keys"]

_INPUT_EVENTS = ("user_message", "tool_result")


def request_time(row: dict[str, Any]) -> float | None:
    """When the round's request arrived: tt_request_at, else its latest input event, else its
    first event (epoch seconds)."""
    t = parse_ts(row.get("tt_request_at"))
    if t is not None:
        return t
    events = row.get("timing_events") or []
    parsed = [parse_ts(e.get("timestamp")) for e in events if e.get("event_type") in _INPUT_EVENTS]
    inputs = [s for s in parsed if s is not None]
    if inputs:
        return max(inputs)
    stamps = [s for s in (parse_ts(e.get("timestamp")) for e in events) if s is not None]
    return min(stamps) if stamps else None


class _Synth:
    """Per-session synthetic block keys: prefix blocks reuse the previous round's keys."""

    def __init__(self) -> None:
        self.counter = 0
        self.session: str | None = None
        self.prev: list[int | str] = []

    def fresh(self) -> int:
        """A new block key: negative ints never collide with the hex-string chain keys
        and keep the first-seen map small."""
        self.counter += 1
        return -self.counter

    def keys(self, row: dict[str, Any], block_size: int) -> list[int | str]:
        if row.get("session_id") != self.session:
            self.session, self.prev = row.get("session_id"), []
        total = int(row.get("input_tokens_total") or 0)
        prefix = int(row.get("prefix_tokens") or 0)
        n_blocks = -(-total // block_size)
        reuse = min(prefix // block_size, len(self.prev), n_blocks)
        keys = self.prev[:reuse] + [self.fresh() for _ in range(n_blocks - reuse)]
        self.prev = keys[: total // block_size]
        return keys


def row_block_keys(row: dict[str, Any], block_size: int, synth: _Synth) -> list[int | str]:
    """Raw block keys of a round's prompt at `block_size` tokens per block.

    With tt_block_hashes (a hash chain: each hash names the whole prefix up to its block), a
    big block is named by the hash of its last small block; a trailing partial block, and
    full blocks the chain does not reach, get keys of their own (the list always has
    ceil(input_tokens_total / block_size) keys). Without them, keys are synthesized from
    prefix/appended token counts.
    """
    hashes = row.get("tt_block_hashes")
    total = int(row.get("input_tokens_total") or 0)
    if not hashes:
        return synth.keys(row, block_size)
    source = int(row.get("tt_block_size") or 64)
    if block_size % source:
        raise ValueError(
            f"block size {block_size} is not a multiple of the recorded block size {source}"
        )
    k = block_size // source
    n_full = total // block_size
    keys: list[int | str] = [
        str(hashes[(j + 1) * k - 1]) for j in range(min(len(hashes) // k, n_full))
    ]
    # the proxy's tokenizer may count a little differently from the provider: blocks the
    # chain does not cover (and a trailing partial block) get keys of their own
    keys += [synth.fresh() for _ in range(-(-total // block_size) - len(keys))]
    synth.session, synth.prev = row.get("session_id"), keys[: total // block_size]
    return keys


class _Renumber:
    """Block key -> id in first-seen order. Synthetic keys (-1..-n) use a flat int64 array
    (8 bytes a block, millions of blocks at TraceLab scale); chain hashes use a dict."""

    def __init__(self, n_synthetic: int) -> None:
        self.synthetic = np.full(n_synthetic + 1, -1, dtype=np.int64)
        self.hashes: dict[str, int] = {}
        self.next = 0

    def __call__(self, key: int | str) -> int:
        if isinstance(key, int):
            found = int(self.synthetic[-key])
            if found < 0:
                found = self.synthetic[-key] = self.next
                self.next += 1
            return found
        known = self.hashes.get(key)
        if known is None:
            known = self.hashes[key] = self.next
            self.next += 1
        return known


def export(rows: Iterable[dict[str, Any]], out: IO[str], *, block_size: int = 512) -> int:
    """Write the mooncake trace ordered by arrival time; returns the number of requests.

    Rows stream into a temporary spill file; only (time, offset) pairs stay in memory, then
    lines are written in time order with hash ids renumbered in first-seen order.
    """
    if block_size <= 0:
        raise ValueError("block size must be positive")
    synth = _Synth()
    index: list[tuple[float, int, int]] = []
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spill:
        for row in rows:
            t = request_time(row)
            if t is None:
                continue
            line = json.dumps(
                [
                    int(row.get("input_tokens_total") or 0),
                    int(row.get("output_tokens") or 0),
                    row_block_keys(row, block_size, synth),
                ],
                separators=(",", ":"),
            )
            index.append((t, len(index), spill.tell()))
            spill.write(line + "\n")
        index.sort()
        renumber = _Renumber(synth.counter)
        t0 = index[0][0] if index else 0.0
        for t, _, offset in index:
            spill.seek(offset)
            input_length, output_length, keys = json.loads(spill.readline())
            hash_ids = [renumber(key) for key in keys]
            out.write(
                json.dumps(
                    {
                        "timestamp": round((t - t0) * 1000),
                        "input_length": input_length,
                        "output_length": output_length,
                        "hash_ids": hash_ids,
                    },
                    separators=(", ", ": "),
                )
                + "\n"
            )
    return len(index)
