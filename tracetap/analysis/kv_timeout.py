"""KV retention timeout T: how much reuse does keeping a session's KV for T seconds buy, and
at what storage cost?

KV active ratio(T) = gen_total / (gen_total + tool_gaps≤T + human_gaps≤T), where gaps are the times
between one round's last event and the next round's arrival, tool gaps before tool-result-started
rounds and human gaps before user-started ones. Hit rate(T) = Σ reusable_r·[gap_r ≤ T] / Σ input,
reusable_r = the part of round r's input equal to the previous round's input+output (max with the
reported prefix; only the reported prefix after a reduction);
idle storage(T) = Σ held_r·min(gap, T).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import ratio
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "TIMEOUTS", "compute", "render", "plot", "round_reuse"]

NAME = "kv_timeout"
TITLE = "KV active ratio and hit rate vs retention timeout"
GROUPED = True
TIMEOUTS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def round_reuse(ds: Dataset) -> dict[str, np.ndarray]:
    """Per round in session order: arrival, end, gap, input, prefix, reusable, held, trigger."""
    a = ds.arrays("""
        SELECT rid, session_id, trig, n_tools, arrival, coalesce(last_event, arrival) AS "end",
               arrival - prev_end AS gap, input_tokens_total AS total, prefix_tokens AS prefix,
               output_tokens AS output, prev_input, prev_output,
               last_output - last_input AS gen
        FROM r ORDER BY session_id, round_index, rid""")
    total = np.asarray(a["total"], dtype=float)
    prefix = np.asarray(a["prefix"], dtype=float)
    prev_in = np.asarray(a["prev_input"], dtype=float)
    prev_out = np.nan_to_num(np.asarray(a["prev_output"], dtype=float))
    first = np.isnan(prev_in)
    grown = ~first & (total >= prev_in)
    reusable = np.where(grown, np.maximum(prefix, np.minimum(total, prev_in + prev_out)), prefix)
    reusable = np.where(first, 0.0, reusable)
    a["reusable"] = reusable
    a["held"] = np.where(first, 0.0, prev_in + prev_out)
    a["gap"] = np.asarray(a["gap"], dtype=float)
    a["first"] = first
    return a


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    a = round_reuse(ds)
    gap = np.nan_to_num(a["gap"], nan=np.inf)
    gap = np.where(gap < 0, 0.0, gap)
    trig = np.asarray(a["trig"]).astype(str)
    gen = np.asarray(a["gen"], dtype=float)
    gen_total = float(gen[gen > 0].sum())
    total_in = float(np.asarray(a["total"], dtype=float).sum())
    reported = ratio(np.asarray(a["prefix"], dtype=float).sum(), total_in)
    fin = np.isfinite(gap)
    rows = []
    for T in opts.get("timeouts", TIMEOUTS):
        keep = gap <= T
        tool = float(gap[keep & fin & (trig == "tool_result")].sum())
        human = float(gap[keep & fin & (trig != "tool_result")].sum())
        rows.append(
            {
                "timeout_s": T,
                "kv_active_ratio": ratio(gen_total, gen_total + tool + human),
                "hit_rate": ratio(a["reusable"][keep].sum(), total_in),
                "idle_token_hours": float((a["held"][fin] * np.minimum(gap[fin], T)).sum()) / 3600,
            }
        )
    return {
        "reported_hit_rate": reported,
        "hit_rate_unbounded": ratio(a["reusable"].sum(), total_in),
        "by_timeout": rows,
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, list_table

    return [
        kv_table("Reuse", {k: v for k, v in result.items() if k != "by_timeout"}),
        list_table("KV retention timeout trade-off", result["by_timeout"]),
    ]


def plot(result: dict[str, Any], fig_dir: Any) -> list[Any]:
    from tracetap.analysis.report import line_plot

    rows = result["by_timeout"]
    xs = [r["timeout_s"] for r in rows]
    return [
        line_plot(
            fig_dir,
            "kv_timeout",
            xs,
            {
                "hit rate": [r["hit_rate"] or 0 for r in rows],
                "KV active ratio": [r["kv_active_ratio"] or 0 for r in rows],
            },
            "retention timeout T",
            "share",
            title="What keeping the KV cache longer buys",
            caption="Hit rate and KV active ratio when a session's KV cache is kept for T after "
            "each round; the dashed line is the hit rate the provider reported.",
            hline=result["reported_hit_rate"],
            seconds_axis=True,
            percent=True,
        )
    ]
