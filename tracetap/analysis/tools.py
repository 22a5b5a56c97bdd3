"""Tool calls: which tools run, how long they take, and which calls hold the time?

Effective latency = tool_internal_latency_ms when present, else tool_wall_latency_ms; non-positive
latencies are counted apart and left out of percentiles and totals (as TraceLab does). Per tool
and per category (execute, file_write, file_read, agent, web, other): calls, share of calls,
p50/p90/p99; per latency bin: share of calls vs share of total tool time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracetap.analysis._stats import ratio, summary
from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "compute", "render", "plot", "category", "BINS"]

NAME = "tools"
TITLE = "Tool calls by name and category, latency"
GROUPED = True

_CATEGORIES = {
    "execute": {
        "bash",
        "exec_command",
        "write_stdin",
        "shell",
        "bashoutput",
        "killshell",
        "local_shell",
        "run_terminal_cmd",
        "unified_exec",
    },
    "file_write": {
        "edit",
        "write",
        "multiedit",
        "apply_patch",
        "notebookedit",
        "str_replace",
        "create_file",
    },
    "file_read": {
        "read",
        "grep",
        "glob",
        "ls",
        "view_image",
        "notebookread",
        "read_file",
        "list_dir",
        "search",
    },
    "agent": {"task", "agent", "spawn_agent", "subagent"},
    "web": {"webfetch", "websearch", "web_search", "web_fetch", "fetch"},
}
BINS: tuple[tuple[str, float, float], ...] = (
    ("<1s", 0, 1),
    ("1-10s", 1, 10),
    ("10-60s", 10, 60),
    ("1-10min", 60, 600),
    (">10min", 600, float("inf")),
)


def category(name: str | None) -> str:
    """The category of a tool name (case-insensitive; MCP tools `mcp__…` count as other)."""
    low = (name or "").lower()
    for cat, names in _CATEGORIES.items():
        if low in names:
            return cat
    return "other"


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    a = ds.arrays("""SELECT tool_name, coalesce(internal_ms, wall_ms) AS lat,
                            internal_ms IS NOT NULL AS internal FROM t""")
    names = np.asarray(a["tool_name"]).astype(str)
    lat_ms = np.asarray(a["lat"], dtype=float)
    internal = np.asarray(a["internal"], dtype=bool)
    n = int(names.size)
    pos = lat_ms > 0
    lat = lat_ms / 1000.0
    total_time = float(lat[pos].sum())
    cats = np.array([category(x) for x in names]) if n else np.array([], dtype=str)

    def block(mask: np.ndarray) -> dict[str, Any]:
        s = summary(lat[mask & pos])
        return {
            "calls": int(mask.sum()),
            "share_of_calls": ratio(mask.sum(), n),
            "share_of_time": ratio(lat[mask & pos].sum(), total_time),
            "p50_s": s["p50"],
            "p90_s": s["p90"],
            "p99_s": s["p99"],
        }

    uniq, counts = np.unique(names, return_counts=True)  # empty arrays for no calls
    order = np.argsort(-counts)
    by_tool = {str(uniq[i]): block(names == uniq[i]) for i in order}
    by_cat = {
        c: block(cats == c) for c in ("execute", "file_write", "file_read", "agent", "web", "other")
    }
    bins = {}
    for label, lo, hi in BINS:
        m = pos & (lat >= lo) & (lat < hi)
        bins[label] = {
            "share_of_calls": ratio(m.sum(), pos.sum()),
            "share_of_time": ratio(lat[m].sum(), total_time),
        }
    top3 = sorted(counts, reverse=True)[:3] if n else []
    eff = summary(lat[pos])
    return {
        "total_tool_calls": n,
        "tool_calls_with_latency": int(pos.sum()),
        "tool_calls_missing_latency": int(np.isnan(lat_ms).sum()),
        "tool_calls_nonpositive_latency": int((lat_ms <= 0).sum()),
        "tool_calls_using_internal_latency": int((internal & ~np.isnan(lat_ms)).sum()),
        "total_seconds": total_time,
        "p50_seconds": eff["p50"],
        "p90_seconds": eff["p90"],
        "p99_seconds": eff["p99"],
        "over_one_minute_share_of_calls": ratio((lat[pos] > 60).sum(), pos.sum()),
        "over_one_minute_share_of_time": ratio(lat[pos & (lat > 60)].sum(), total_time),
        "top3_share_of_calls": ratio(sum(top3), n),
        "by_tool": by_tool,
        "by_category": by_cat,
        "latency_bins": bins,
        "_lat": lat[pos],
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, records_table

    flat = {k: v for k, v in result.items() if not isinstance(v, (dict, np.ndarray))}
    top = dict(list(result["by_tool"].items())[:15])
    return [
        kv_table("Tool calls", flat),
        records_table("By category", result["by_category"], key="category"),
        records_table("By tool (top 15)", top, key="tool"),
        records_table(
            "Latency bins: share of calls vs share of time", result["latency_bins"], key="bin"
        ),
    ]


def plot(result: dict[str, Any], fig_dir: Any) -> list[Any]:
    from tracetap.analysis.report import bar_plot, hist_plot

    bins = result["latency_bins"]
    return [
        hist_plot(
            fig_dir,
            "tool_latency",
            {"latency": result["_lat"]},
            "seconds (log scale)",
            log=True,
            title="Tool latency",
            caption="Effective latency of each tool call (runner-reported when present, else "
            "result arrival minus call emission).",
        ),
        bar_plot(
            fig_dir,
            "tool_latency_bins",
            list(bins),
            {
                "share of calls": [b["share_of_calls"] or 0 for b in bins.values()],
                "share of tool time": [b["share_of_time"] or 0 for b in bins.values()],
            },
            "share",
            title="Few slow calls hold the tool time",
            caption="Per latency bin: its share of tool calls against its share of the total "
            "tool time.",
            percent=True,
        ),
    ]
