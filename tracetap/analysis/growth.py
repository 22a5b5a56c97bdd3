"""Context growth, compaction and redundant prefill: how does the prompt evolve between rounds?

delta = same-session input_tokens_total − previous round's (first rounds excluded), bucketed as
TraceLab does: micro reduction ≤ 1,024, ordinary, major ≥ 64,000 tokens (a compaction; the
contract's docs say 50,000, also reported). Prefill amplification = Σ newly_append / Σ positive
delta; genuinely new tokens = Σ max(0, delta − previous output) (user text and tool results,
not the model's own).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import pct, ratio
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "compute", "render", "plot"]

NAME = "growth"
TITLE = "Context growth, compaction and redundant prefill"
GROUPED = True

MICRO = 1024
MAJOR = 64000
MAJOR_DOCS = 50000


def _buckets(delta: np.ndarray) -> dict[str, Any]:
    n = int(delta.size)
    neg = delta[delta < 0]
    red = -neg
    counts: dict[str, int | float | None] = {
        "rounds": n,
        "positive_growth_rounds": int((delta > 0).sum()),
        "zero_growth_rounds": int((delta == 0).sum()),
        "negative_growth_rounds": int(neg.size),
        "micro_reduction_rounds": int((red <= MICRO).sum()),
        "ordinary_reduction_rounds": int(((red > MICRO) & (red < MAJOR)).sum()),
        "major_reduction_rounds": int((red >= MAJOR).sum()),
    }
    counts.update(
        {
            "total_context_increase_tokens": int(delta[delta > 0].sum()),
            "total_raw_delta_tokens": int(delta.sum()),
            "total_reduction_tokens": int(red.sum()) if red.size else None,
            "median_raw_delta_tokens": pct(delta, 50),
            "p10_raw_delta_tokens": pct(delta, 10),
            "p90_raw_delta_tokens": pct(delta, 90),
            "max_reduction_tokens": int(red.max()) if red.size else None,
        }
    )
    return counts


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    events = ds.con.execute(f"""
        SELECT session_id, round_index, prev_input, input_tokens_total FROM r
        WHERE prev_input - input_tokens_total >= {MAJOR}
        ORDER BY first_event NULLS LAST, session_id, round_index LIMIT 20""").fetchall()
    a = ds.arrays("""SELECT trig, input_tokens_total - prev_input AS delta,
                            newly_append_tokens AS append, prev_output
                     FROM r WHERE prev_input IS NOT NULL""")
    delta = np.asarray(a["delta"], dtype=np.int64)
    trig = np.asarray(a["trig"]).astype(str)
    append = np.asarray(a["append"], dtype=float)
    prev_out = np.asarray(a["prev_output"], dtype=float)
    growth = np.clip(delta, 0, None).astype(float)
    new = np.clip(delta - prev_out, 0, None)
    return {
        "all": _buckets(delta),
        "by_trigger": {t: _buckets(delta[trig == t]) for t in ("user_message", "tool_result")},
        "compactions": int((delta <= -MAJOR).sum()),
        "compactions_50k": int((delta <= -MAJOR_DOCS).sum()),
        "compaction_events": [
            {"session_id": sid, "round_index": idx, "input_before": before, "input_after": after}
            for sid, idx, before, after in events
        ],
        "redundant_prefill": {
            "rounds": int(delta.size),
            "append_tokens": float(append.sum()),
            "context_increase_tokens": float(growth.sum()),
            "genuinely_new_tokens": float(new.sum()),
            "prefill_amplification": ratio(append.sum(), growth.sum()),
            "genuinely_new_share_of_append": ratio(new.sum(), append.sum()),
        },
        "_delta": delta,
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, list_table, records_table

    table = {"all": result["all"], **result["by_trigger"]}
    return [
        records_table("Same-session input growth", table, key="rounds", transpose=True),
        kv_table(
            "Compaction and redundant prefill",
            {
                "compactions (≥64k drop)": result["compactions"],
                "compactions (≥50k drop)": result["compactions_50k"],
                **result["redundant_prefill"],
            },
        ),
        *(
            [list_table("First compaction events", result["compaction_events"])]
            if result["compaction_events"]
            else []
        ),
    ]


def plot(result: dict[str, Any], fig_dir: Any) -> list[Any]:
    from tracetap.analysis.report import hist_plot

    d = result["_delta"].astype(float)
    return [
        hist_plot(
            fig_dir,
            "growth",
            {"delta": d},
            "input growth between consecutive rounds (tokens)",
            log=False,
            title="Context growth between rounds",
            caption="Same-session change of input_tokens_total from one round to the next "
            "(negative: the context was cut).",
        )
    ]
