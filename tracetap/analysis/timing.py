"""Generation time, decode speed and human input wait: where does a session's wall time go?

Observable generation time = latest input event (user_message/tool_result) → last model-output
event (reasoning/text/tool_call) in the round; decode speed = output_tokens / that time per round.
TraceLab's normalized decode speed = Σ output / Σ generation time.
Human input wait (TraceLab's rule) = gap from the previous same-session event of any type to each
user_message, strictly positive gaps only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import summary
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "compute", "render", "plot", "human_waits"]

NAME = "timing"
TITLE = "Generation time, decode speed, human wait"
GROUPED = True


def human_waits(ds: Dataset) -> np.ndarray:
    """Seconds before each user_message since the previous same-session event (> 0 only)."""
    a = ds.arrays("""
        SELECT event_type, ts - lag(ts) OVER (PARTITION BY session_id
                                               ORDER BY round_index, rid, event_index) AS gap
        FROM e""")
    gap = np.asarray(a["gap"], dtype=float)
    m = (np.asarray(a["event_type"]).astype(str) == "user_message") & (gap > 0)
    return gap[m]


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    a = ds.arrays("""SELECT last_output - last_input AS gen, output_tokens AS output,
                            reasoning_end - last_input AS to_reasoning
                     FROM r WHERE last_output IS NOT NULL AND last_input IS NOT NULL""")
    gen = np.asarray(a["gen"], dtype=float)
    out = np.asarray(a["output"], dtype=float)
    ok = gen > 0
    speed = out[ok] / gen[ok]
    waits = human_waits(ds)
    tool_s = (
        ds.scalar("""SELECT sum(coalesce(internal_ms, wall_ms)) / 1000.0 FROM t
                          WHERE coalesce(internal_ms, wall_ms) > 0""")
        or 0.0
    )
    gen_total = float(gen[gen > 0].sum())
    human_total = float(waits.sum())
    wall = gen_total + float(tool_s) + human_total
    return {
        "observable_generation_seconds": summary(gen[gen >= 0]),
        "decode_speed_tokens_per_second": summary(speed),
        # TraceLab's "average normalized decoding speed": Σ output / Σ generation time
        "normalized_decode_speed_tokens_per_second": float(out[ok].sum() / gen[ok].sum())
        if ok.any()
        else None,
        "input_to_reasoning_end_seconds": summary(np.asarray(a["to_reasoning"], dtype=float)),
        "human_wait_seconds": summary(waits),
        "human_waits_within_5_min": float((waits <= 300).mean()) if waits.size else None,
        "time_shares": {
            "generation": gen_total / wall if wall else None,
            "tools": float(tool_s) / wall if wall else None,
            "human": human_total / wall if wall else None,
        },
        "_waits": waits,
        "_speed": speed,
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, records_table

    dist = {
        k: result[k]
        for k in (
            "observable_generation_seconds",
            "decode_speed_tokens_per_second",
            "input_to_reasoning_end_seconds",
            "human_wait_seconds",
        )
    }
    return [
        records_table("Timing distributions", dist, key="metric"),
        kv_table(
            "Share of session time (generation + tools + human)",
            {
                "normalized decode speed (Σout/Σtime)": result[
                    "normalized_decode_speed_tokens_per_second"
                ],
                **result["time_shares"],
                "human waits ≤ 5 min": result["human_waits_within_5_min"],
            },
        ),
    ]


def plot(result: dict[str, Any], fig_dir: Any) -> list[Any]:
    from tracetap.analysis.report import hist_plot

    return [
        hist_plot(
            fig_dir,
            "human_wait",
            {"human wait": result["_waits"]},
            "seconds (log scale)",
            log=True,
            title="Human input wait",
            caption="Gap from the previous same-session event to each user message; the "
            "dashed line marks 5 minutes.",
            vline=(300.0, "5 min"),
        ),
        hist_plot(
            fig_dir,
            "decode_speed",
            {"decode speed": result["_speed"]},
            "output tokens per observable generation second (log scale)",
            log=True,
            title="Decode speed per round",
            caption="Output tokens divided by the round's observable generation time "
            "(latest input event to last output event).",
        ),
    ]
