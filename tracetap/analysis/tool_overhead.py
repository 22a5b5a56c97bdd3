"""Tool-calling overhead: how many input tokens go to tool definitions and tool-call framing?

With tokenizer segments (`tt_segments` from the store: tools, system, history, new_input, output)
the tool-definition and call-argument tokens are exact per round (plus ~20 wrapper tokens per
call, estimated); otherwise they are estimated from sizes: the
session's smallest input minus that round's new text (≈ system + tool definitions, an upper bound),
and framing ≈ 20 tokens per call plus arguments at 3.6 chars/token. The output says which.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import ratio, summary
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "compute", "render"]

NAME = "tool_overhead"
TITLE = "Tool-calling overhead (definitions and framing)"
GROUPED = True
FRAMING_TOKENS_PER_CALL = 20
CHARS_PER_TOKEN = 3.6


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    a = ds.arrays("""
        SELECT session_id, input_tokens_total AS total, seg_tools, seg_output_tool_args, n_tools,
               min(input_tokens_total - coalesce(current_input_chars, 0) / 3.6)
                   OVER (PARTITION BY session_id) AS floor_tokens,
               coalesce(tc.arg_chars, 0) AS arg_chars
        FROM r LEFT JOIN (SELECT rid, sum(input_chars) AS arg_chars FROM t GROUP BY rid) tc
        USING (rid)""")
    total = np.asarray(a["total"], dtype=float)
    measured = np.asarray(a["seg_tools"], dtype=float)
    has = ~np.isnan(measured)
    estimate = np.minimum(np.clip(np.asarray(a["floor_tokens"], dtype=float), 0, None), total)
    defs = np.where(has, measured, estimate)
    exact = bool(has.any())
    if exact and has.all():
        method = "exact: tokenizer segments (tt_segments.tools)"
    elif exact:
        method = (
            f"exact for {int(has.sum())} of {has.size} rounds (tt_segments.tools); the rest "
            "estimated from sizes"
        )
    else:
        method = (
            "estimated from sizes (no tokenizer segments): the session's smallest input "
            "minus that round's new text ≈ system prompt + tool definitions (upper bound)"
        )
    args = np.asarray(a["arg_chars"], dtype=float) / CHARS_PER_TOKEN
    if exact:
        measured_args = np.asarray(a["seg_output_tool_args"], dtype=float)
        args = np.where(np.isnan(measured_args), args, measured_args)
        method += "; call arguments exact (tt_segments.output_tool_args)"
    framing = np.asarray(a["n_tools"], dtype=float) * FRAMING_TOKENS_PER_CALL + args
    sess = np.asarray(a["session_id"]).astype(str)
    _, inv = np.unique(sess, return_inverse=True)
    per_session = np.bincount(inv, weights=defs + framing) if sess.size else np.array([])
    return {
        "method": method,
        "rounds": int(total.size),
        "exact_rounds": int(has.sum()),
        "definition_tokens_per_round": summary(defs),
        "framing_tokens_per_round": summary(framing),
        "overhead_tokens_per_session": summary(per_session),
        "definition_share_of_input": ratio(defs.sum(), total.sum()),
        "framing_share_of_input": ratio(framing.sum(), total.sum()),
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, records_table

    dists = {
        k: result[k]
        for k in (
            "definition_tokens_per_round",
            "framing_tokens_per_round",
            "overhead_tokens_per_session",
        )
    }
    return [
        kv_table(
            "Tool-calling overhead", {k: v for k, v in result.items() if not isinstance(v, dict)}
        ),
        records_table("Distributions", dists, key="tokens"),
    ]
