"""The five numbers a serving researcher looks at first, beside TraceLab's published values.

`headline(results)` picks them out of the analyses' results (all rows, then each group); an
analysis left out with --only leaves its figure empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SOURCE", "Headline", "headline"]

SOURCE = (
    "TraceLab (University of Washington), “TraceLab: Characterizing Coding Agent Workloads "
    "for LLM Serving”, 2026: the headline figures of its analysis of 357,161 rounds from "
    "~4,300 Claude Code and Codex sessions (github.com/uw-syfi/TraceLab)"
)


@dataclass(frozen=True)
class Headline:
    """One headline figure: what it is, its definition, its values (per column), TraceLab's."""

    key: str
    title: str
    definition: str
    unit: str
    values: dict[str, Any]  # column ("all" or a group) -> value (a tuple for a pair)
    published: str


def _timeout_hit(res: dict[str, Any], seconds: int) -> float | None:
    for row in res.get("by_timeout", []):
        if row.get("timeout_s") == seconds:
            return row.get("hit_rate")
    return None


# (key, title, definition, unit, analysis, pick(result), TraceLab's value)
_FIGURES: list[tuple[str, str, str, str, str, Any, str]] = [
    (
        "prefix_hit_rate",
        "Prefix cache hit rate",
        "Token-weighted: Σ prefix_tokens / Σ (prefix_tokens + newly_append_tokens), as the "
        "provider reported.",
        "pct",
        "tokens",
        lambda r: r.get("prefix_hit_rate"),
        "95.7 %",
    ),
    (
        "rounds_per_user_request",
        "LLM rounds per user request",
        "Rounds divided by rounds started by a user message: the autonomous loop's length.",
        "num",
        "overview",
        lambda r: r.get("rounds_per_user_request"),
        "8.8",
    ),
    (
        "tool_latency",
        "Tool latency p50 / p90",
        "Effective tool latency (runner-reported when present, else result arrival − call "
        "emission), median and 90th percentile.",
        "seconds",
        "tools",
        lambda r: (r.get("p50_seconds"), r.get("p90_seconds")),
        "0.3 s / 13.6 s",
    ),
    (
        "kv_timeout",
        "KV hit rate, kept 1 min / 1 h",
        "Token-weighted KV hit rate when a session's KV cache is kept 1 minute, or 1 hour, "
        "after each round.",
        "pct",
        "kv_timeout",
        lambda r: (_timeout_hit(r, 60), _timeout_hit(r, 3600)),
        "85.4 % / 98.6 %",
    ),
    (
        "wall_time",
        "Session time: human / tools / generation",
        "Share of session wall time waiting for the human, running tools and generating.",
        "pct",
        "timing",
        lambda r: tuple(r.get("time_shares", {}).get(k) for k in ("human", "tools", "generation")),
        "92 % / 5 % / 3 %",
    ),
]


def headline(results: dict[str, Any]) -> list[Headline]:
    """The five headline figures for all rows and each group the results hold.

    Example: headline(analysis.results)[0].values["all"] -> 0.957
    """
    out = []
    for key, title, definition, unit, name, pick, published in _FIGURES:
        entry = results.get(name)
        values: dict[str, Any] = {}
        if entry is not None:
            values["all"] = pick(entry["all"])
            for group, res in entry.get("groups", {}).items():
                values[group] = pick(res)
        out.append(Headline(key, title, definition, unit, values, published))
    return out
