"""Append-length-aware prefill: how much prefill work is there per round if only the append is
computed, vs recomputing the full prefix, and what does batching by append length save?

Model: prefill cost of a round ∝ tokens computed × (1 + context / 32k) (attention over the cached
context grows linearly); a batch of size B pads every round to its longest append. Scheduler A
batches in arrival order, scheduler B sorts each window of 64 arrivals by append length; saving =
padded tokens avoided. Full recompute computes input_tokens_total per round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import ratio, summary
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "compute", "render", "padded_tokens"]

NAME = "append_prefill"
TITLE = "Append-length-aware prefill"
GROUPED = True
ATTN_SCALE = 32768.0


def padded_tokens(appends: np.ndarray, batch: int) -> float:
    """Σ over consecutive batches of batch_len × max(append in batch)."""
    n = appends.size
    if n == 0:
        return 0.0
    pad = (-n) % batch
    arr = np.concatenate([appends, np.zeros(pad)]).reshape(-1, batch)
    lens = np.full(arr.shape[0], batch)
    if pad:
        lens[-1] = batch - pad
    return float((arr.max(axis=1) * lens).sum())


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    batch = int(opts.get("batch", 8))
    window = int(opts.get("window", 64))
    a = ds.arrays(
        "SELECT newly_append_tokens AS ap, prefix_tokens AS px, "
        "input_tokens_total AS tot FROM r ORDER BY arrival, rid"
    )
    ap = np.asarray(a["ap"], dtype=float)
    px = np.asarray(a["px"], dtype=float)
    tot = np.asarray(a["tot"], dtype=float)
    append_work = ap * (1 + (px + ap / 2) / ATTN_SCALE)
    full_work = tot * (1 + tot / 2 / ATTN_SCALE)
    fifo = padded_tokens(ap, batch)
    n_win = -(-ap.size // window) if ap.size else 0
    sorted_ap = (
        np.concatenate([np.sort(ap[i * window : (i + 1) * window]) for i in range(n_win)])
        if n_win
        else ap
    )
    aware = padded_tokens(sorted_ap, batch)
    return {
        "model": (
            f"cost ∝ tokens computed × (1 + context/{int(ATTN_SCALE)}); batches of {batch} "
            f"padded to the longest append; append-aware = sort each {window} arrivals"
        ),
        "rounds": int(ap.size),
        "batch_size": batch,
        "sort_window": window,
        "append_only_tokens_per_round": summary(ap),
        "full_recompute_tokens_per_round": summary(tot),
        "append_only_work_share_of_full": ratio(append_work.sum(), full_work.sum()),
        "padded_tokens_fifo": fifo,
        "padded_tokens_append_aware": aware,
        "useful_tokens": float(ap.sum()),
        "padding_waste_fifo": ratio(fifo - ap.sum(), fifo),
        "padding_waste_append_aware": ratio(aware - ap.sum(), aware),
        "append_aware_saving": ratio(fifo - aware, fifo),
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, records_table

    dists = {
        k: result[k] for k in ("append_only_tokens_per_round", "full_recompute_tokens_per_round")
    }
    return [
        kv_table(
            "Append-length-aware prefill",
            {k: v for k, v in result.items() if not isinstance(v, dict)},
        ),
        records_table("Prefill tokens per round", dists, key="mode"),
    ]
