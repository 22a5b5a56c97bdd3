"""Semantic tool-latency prediction: can a tool call's latency be forecast when it is emitted?

Features known at emission: tool name, the executable for shell calls (when tools[].input exists),
input size, and earlier latencies of the same tool/executable in the session. Train on the first
70 % of sessions by start time, test on the rest. Metrics: median absolute log10 error, MAE (s), and
keep-or-evict accuracy at a threshold τ (keep the KV cache iff the predicted latency < τ) against
the static baselines: a fixed timeout (always keep for τ) and the per-tool median.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from tracetap.analysis.load import Dataset

__all__ = ["NAME", "TITLE", "GROUPED", "LatencyModel", "compute", "render", "tool_frame"]

NAME = "latency_predict"
TITLE = "Tool-latency prediction (semantic vs static)"
GROUPED = False


def tool_frame(ds: Dataset) -> dict[str, np.ndarray]:
    """Tool calls in session/emission order with features, latency (s) and session start time."""
    a = ds.arrays(r"""
        WITH s AS (SELECT session_id, min(first_event) AS s0 FROM r GROUP BY 1),
        c AS (SELECT t.*, coalesce(json_extract_string(input, '$.command'),
                                   json_extract_string(input, '$.cmd')) AS cmd FROM t)
        SELECT c.rid, c.session_id, c.tool_name, c.input_chars, s.s0,
               coalesce(c.internal_ms, c.wall_ms) / 1000.0 AS lat,
               CASE WHEN cmd IS NULL THEN '' ELSE
                 regexp_extract(regexp_replace(regexp_replace(regexp_replace(ltrim(cmd, '["[ '),
                   '^(ba|z)?sh"?,? *"?-l?c"?,? *"?', ''),
                   '^(cd +\S+ *(&&|;) *)', ''), '^(env +)?([A-Za-z_]+=\S* +)*', ''),
                   '([A-Za-z0-9_.+-]+)', 1) END AS exe
        FROM c JOIN s USING (session_id)
        ORDER BY s.s0, c.session_id, c.emitted, c.tool_index""")
    a["lat"] = np.asarray(a["lat"], dtype=float)
    a["input_chars"] = np.nan_to_num(np.asarray(a["input_chars"], dtype=float))
    return a


def _size_bin(chars: float) -> int:
    return int(np.log2(max(chars, 1.0)))


class LatencyModel:
    """Hierarchical medians: (tool, executable, size bin) → (tool, executable) → tool → all,
    blended (geometric mean) with the session's earlier latencies for the same key."""

    def __init__(self, min_count: int = 5) -> None:
        self.min_count = min_count
        self.tables: list[dict[tuple[Any, ...], float]] = []
        self.global_median = 1.0

    @staticmethod
    def _keys(name: str, exe: str, chars: float) -> list[tuple[Any, ...]]:
        return [(name, exe, _size_bin(chars)), (name, exe), (name,)]

    def fit(
        self, names: np.ndarray, exes: np.ndarray, chars: np.ndarray, lat: np.ndarray
    ) -> LatencyModel:
        groups: list[dict[tuple[Any, ...], list[float]]] = [defaultdict(list) for _ in range(3)]
        for n, e, c, y in zip(names, exes, chars, lat):
            if y > 0:
                for level, key in enumerate(self._keys(n, e, c)):
                    groups[level][key].append(y)
        self.tables = [
            {k: float(np.median(v)) for k, v in g.items() if len(v) >= self.min_count}
            for g in groups
        ]
        ok = lat[lat > 0]
        self.global_median = float(np.median(ok)) if ok.size else 1.0
        return self

    def static(self, name: str, exe: str, chars: float) -> float:
        for level, key in enumerate(self._keys(name, exe, chars)):
            if key in self.tables[level]:
                return self.tables[level][key]
        return self.global_median

    def predict(
        self,
        sessions: np.ndarray,
        names: np.ndarray,
        exes: np.ndarray,
        chars: np.ndarray,
        lat: np.ndarray,
    ) -> np.ndarray:
        """Predict in order; a call sees the latencies of earlier calls of its session."""
        seen: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        out = np.empty(len(names))
        for i, (s, n, e, c, y) in enumerate(zip(sessions, names, exes, chars, lat)):
            base = self.static(n, e, c)
            hist = seen.get((s, n, e))
            out[i] = float(np.sqrt(base * np.median(hist))) if hist else base
            if y > 0:
                seen[(s, n, e)].append(y)
        return out


def _metrics(pred: np.ndarray, y: np.ndarray, tau: float) -> dict[str, Any]:
    ok = y > 0
    p, t = np.maximum(pred[ok], 1e-3), y[ok]
    long_ = t >= tau
    keep = p < tau
    return {
        "median_abs_log10_error": float(np.median(np.abs(np.log10(p / t)))) if t.size else None,
        "mae_s": float(np.mean(np.abs(p - t))) if t.size else None,
        "decision_accuracy": float(np.mean(keep == ~long_)) if t.size else None,
        "kept_but_long": int((keep & long_).sum()),
        "evicted_but_short": int((~keep & ~long_).sum()),
        # KV held τ for nothing (the call outlasted τ anyway) / hits lost by evicting early
        "wasted_keep_seconds": float(tau * (keep & long_).sum()),
        "avoidable_misses": int((~keep & ~long_).sum()),
    }


def compute(ds: Dataset, opts: dict[str, Any]) -> dict[str, Any]:
    tau = float(opts.get("keep_threshold_s", 60.0))
    a = tool_frame(ds)
    sessions = np.asarray(a["session_id"]).astype(str)
    n = sessions.size
    if n == 0:
        return {"calls": 0, "note": "no tool calls"}
    uniq = list(dict.fromkeys(sessions))  # already ordered by session start
    cut = set(uniq[: max(1, int(len(uniq) * 0.7))]) if len(uniq) > 1 else set(uniq)
    train = np.array([s in cut for s in sessions])
    test = ~train if (~train).any() else train
    names = np.asarray(a["tool_name"]).astype(str)
    exes = np.asarray(a["exe"]).astype(str)
    chars, lat = a["input_chars"], a["lat"]
    model = LatencyModel().fit(names[train], exes[train], chars[train], lat[train])
    pred = model.predict(sessions[test], names[test], exes[test], chars[test], lat[test])
    tool_only = LatencyModel(min_count=1)
    tool_only.fit(names[train], np.full(train.sum(), ""), np.ones(train.sum()), lat[train])
    per_tool = np.array(
        [tool_only.tables[2].get((x,), tool_only.global_median) for x in names[test]]
    )
    y = lat[test]
    fixed = np.full(y.size, tau * 0.999)  # a fixed timeout keeps every call's KV for τ
    return {
        "calls": int(n),
        "train_calls": int(train.sum()),
        "test_calls": int(test.sum()),
        "train_sessions": len(cut),
        "test_sessions": len(uniq) - len(cut),
        "uses_command_features": bool(ds.has_input),
        "features": "tool name, executable, input size, session history"
        if ds.has_input
        else "tool name, input size, session history (no tools[].input in this trace)",
        "keep_threshold_s": tau,
        "methods": {
            "semantic": _metrics(pred, y, tau),
            "per_tool_median": _metrics(per_tool, y, tau),
            "fixed_timeout": _metrics(fixed, y, tau),
        },
    }


def render(result: dict[str, Any]) -> list[Any]:
    from tracetap.analysis.report import kv_table, records_table

    if "methods" not in result:
        return [kv_table(TITLE, result)]
    head = {k: v for k, v in result.items() if k != "methods"}
    return [
        kv_table("Tool-latency prediction", head),
        records_table(
            "Error and keep-or-evict decisions (test sessions)", result["methods"], key="method"
        ),
    ]
