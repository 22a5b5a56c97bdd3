"""Overview: how big is the trace and how autonomous are the agents?

Metrics: sessions, rounds, tool calls, user requests (rounds started by a user message), rounds and
tool calls per user request, autonomous loop length (rounds from one user message to the next).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import ratio, summary
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "compute", "render"]

NAME = "overview"
TITLE = "Overview"
GROUPED = True


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    row = ds.con.execute("""
        SELECT count(DISTINCT session_id), count(*),
               count(*) FILTER (WHERE trig = 'user_message'),
               count(*) FILTER (WHERE trig = 'tool_result'),
               min(first_event), max(last_event), sum(n_tools),
               count(*) FILTER (WHERE n_tools > 0)
        FROM r""").fetchone()
    assert row is not None  # an aggregate without GROUP BY gives one row
    sessions, rounds, user_rounds, tool_rounds, t0, t1, n_tools, rounds_with_tools = row
    # loop length: rounds in each run started by a user message (runs before the first user
    # message in a session count as their own loop)
    loops = ds.arrays("""
        SELECT count(*) AS n FROM (
            SELECT session_id, sum(CASE WHEN trig = 'user_message' THEN 1 ELSE 0 END)
                   OVER (PARTITION BY session_id ORDER BY round_index, rid) AS loop_no
            FROM r) GROUP BY session_id, loop_no""")["n"]
    by_provider = dict(
        ds.con.execute("SELECT provider, count(*) FROM r GROUP BY 1 ORDER BY 2 DESC").fetchall()
    )
    by_model = dict(
        ds.con.execute("SELECT model, count(*) FROM r GROUP BY 1 ORDER BY 2 DESC").fetchall()
    )
    return {
        "total_sessions": sessions,
        "llm_rounds_total": rounds,
        "rounds_with_visible_user_message": user_rounds,
        "rounds_started_from_tool_result": tool_rounds,
        "total_tool_calls": int(n_tools or 0),
        "rounds_with_tool_calls": rounds_with_tools,
        "rounds_per_user_request": ratio(rounds, user_rounds),
        "tool_calls_per_user_request": ratio(n_tools or 0, user_rounds),
        "loop_length_rounds": summary(np.asarray(loops, dtype=float)),
        "earliest_observed": t0,
        "latest_observed": t1,
        "rounds_by_provider": by_provider,
        "rounds_by_model": by_model,
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table

    flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
    return [
        kv_table("Overview", flat),
        kv_table("Autonomous loop length (rounds per user request)", result["loop_length_rounds"]),
        kv_table("Rounds by provider", result["rounds_by_provider"]),
        kv_table("Rounds by model", result["rounds_by_model"]),
    ]
