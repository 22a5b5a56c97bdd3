"""Tokens and prefix reuse: how much of each round's input is already cached?

Distributions of input total, prefix, append, adjusted append (`newly_append_tokens` − previous
same-session round's `output_tokens`) and output; prefix hit ratio = prefix / (prefix + append),
token-weighted overall and per trigger (user-started vs tool-result-started rounds), per provider.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import ratio, summary
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "compute", "render", "plot"]

NAME = "tokens"
TITLE = "Token distributions and prefix hit ratio"
GROUPED = True


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    a = ds.arrays("""SELECT provider, trig, input_tokens_total AS total, prefix_tokens AS prefix,
                            newly_append_tokens AS append, output_tokens AS output,
                            reasoning_output_tokens AS reasoning,
                            newly_append_tokens - prev_output AS adjusted
                     FROM r""")
    out: dict[str, Any] = {"distributions": {}, "hit_ratio": {}, "by_provider": {}}
    for key in ("total", "prefix", "append", "adjusted", "output"):
        out["distributions"][key] = summary(np.asarray(a[key], dtype=float))
    prefix = np.asarray(a["prefix"], dtype=float)
    append = np.asarray(a["append"], dtype=float)
    out["total_input_tokens"] = float(np.asarray(a["total"], dtype=float).sum())
    out["new_input_tokens"] = float(append.sum())
    out["cached_read_input_tokens"] = float(prefix.sum())
    out["prefix_hit_rate"] = ratio(prefix.sum(), prefix.sum() + append.sum())
    out["mean_round_hit_ratio"] = (
        float(np.mean(prefix / np.maximum(prefix + append, 1))) if prefix.size else None
    )
    trig = np.asarray(a["trig"]).astype(str)
    for t in ("user_message", "tool_result"):
        m = trig == t
        out["hit_ratio"][t] = {
            "rounds": int(m.sum()),
            "prefix_hit_rate": ratio(prefix[m].sum(), prefix[m].sum() + append[m].sum()),
            "average_new_input_tokens": float(append[m].mean()) if m.any() else None,
        }
    reasoning = np.asarray(a["reasoning"], dtype=float)
    output = np.asarray(a["output"], dtype=float)
    out["total_output_tokens"] = float(output.sum())
    out["reasoning_output_tokens"] = float(np.nansum(reasoning))
    prov = np.asarray(a["provider"]).astype(str)
    for p in sorted(set(prov)):
        m = prov == p
        out["by_provider"][p] = {
            "rounds": int(m.sum()),
            "prefix_hit_rate": ratio(prefix[m].sum(), prefix[m].sum() + append[m].sum()),
            "p50_prefix": float(np.median(prefix[m])),
            "p50_append": float(np.median(append[m])),
            "p50_output": float(np.median(output[m])),
            **{
                f"hit_{t}": ratio(
                    prefix[m & (trig == t)].sum(),
                    prefix[m & (trig == t)].sum() + append[m & (trig == t)].sum(),
                )
                for t in ("user_message", "tool_result")
            },
        }
    out["_hist"] = {k: np.asarray(a[k], dtype=float) for k in ("prefix", "append", "output")}
    return out


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, records_table

    head = {
        k: result[k]
        for k in (
            "total_input_tokens",
            "new_input_tokens",
            "cached_read_input_tokens",
            "prefix_hit_rate",
            "mean_round_hit_ratio",
            "total_output_tokens",
            "reasoning_output_tokens",
        )
    }
    return [
        kv_table("Tokens", head),
        records_table("Token distributions", result["distributions"], key="tokens", unit="tokens"),
        records_table("Prefix hit ratio by trigger", result["hit_ratio"], key="trigger"),
        records_table("By provider", result["by_provider"], key="provider"),
    ]


def plot(result: dict[str, Any], fig_dir: Any) -> list[Any]:
    from tracetap.analysis.report import hist_plot

    return [
        hist_plot(
            fig_dir,
            "tokens",
            result["_hist"],
            "tokens per round (log scale)",
            log=True,
            title="Prefix, append and output tokens per round",
            caption="Per round: the cached prefix, the appended (uncached) input and the "
            "output tokens.",
        )
    ]
