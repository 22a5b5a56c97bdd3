"""The `tracetap analyze` figures as interactive plotly figures (hover values, zoom) for the
analysis page: built from the same results as the PNG figures, one function per figure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go  # type: ignore[import-untyped]
import plotly.io as pio  # type: ignore[import-untyped]
from sqlalchemy.engine import Engine

from tracetap.analysis.load import InputError
from tracetap.analysis.run import analyze
from tracetap.storage.filters import Filter

__all__ = ["analysis_figures", "figures"]


def _values(series: Any) -> np.ndarray:
    v = np.asarray(series if series is not None else [], dtype=float)
    return v[np.isfinite(v)]


def _hist(title: str, series: dict[str, Any], xlabel: str, *, log: bool) -> go.Figure | None:
    """A histogram per series; on a log axis the bins are log-spaced (bars at bin centres,
    hover giving each bin's range and count)."""
    fig = go.Figure()
    for label, values in series.items():
        v = _values(values)
        if log:
            v = v[v > 0]
        if not v.size:
            continue
        if log:
            edges = np.logspace(np.log10(v.min()), np.log10(v.max()) + 1e-9, 41)
            counts, edges = np.histogram(v, bins=edges)
            centres = np.sqrt(edges[:-1] * edges[1:])
            fig.add_bar(
                x=centres,
                y=counts,
                width=np.diff(edges),
                name=label,
                customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                hovertemplate="%{customdata[0]:.3g}–%{customdata[1]:.3g}: %{y}<extra></extra>",
                opacity=0.7,
            )
        else:
            fig.add_histogram(x=v, nbinsx=50, name=label, opacity=0.7)
    if not fig.data:
        return None
    fig.update_layout(title=title, barmode="overlay", xaxis_title=xlabel, yaxis_title="count")
    if log:
        fig.update_xaxes(type="log")
    return fig


def _tokens(res: dict[str, Any]) -> list[go.Figure | None]:
    return [_hist("Tokens per round", res.get("_hist") or {}, "tokens per round", log=True)]


def _growth(res: dict[str, Any]) -> list[go.Figure | None]:
    delta = {"input growth": res.get("_delta")}
    return [_hist("Input growth between rounds", delta, "tokens", log=False)]


def _timing(res: dict[str, Any]) -> list[go.Figure | None]:
    return [
        _hist("Human wait before a round", {"human wait": res.get("_waits")}, "seconds", log=True),
        _hist(
            "Decode speed",
            {"decode speed": res.get("_speed")},
            "output tokens / observable generation second",
            log=True,
        ),
    ]


def _tools(res: dict[str, Any]) -> list[go.Figure | None]:
    out = [_hist("Tool latency", {"latency": res.get("_lat")}, "seconds", log=True)]
    bins = res.get("latency_bins") or {}
    if bins:
        fig = go.Figure()
        for name, key in (("calls", "share_of_calls"), ("time", "share_of_time")):
            fig.add_bar(x=list(bins), y=[b.get(key) or 0 for b in bins.values()], name=name)
        fig.update_layout(
            title="Tool latency bins: share of calls and of time", yaxis_title="share"
        )
        out.append(fig)
    return out


def _reported(fig: go.Figure, value: float | None) -> None:
    if value is not None:
        fig.add_hline(y=value, line_dash="dash", line_color="grey", annotation_text="reported")


def _kv_timeout(res: dict[str, Any]) -> list[go.Figure | None]:
    rows = res.get("by_timeout") or []
    if not rows:
        return []
    fig = go.Figure()
    xs = [r["timeout_s"] for r in rows]
    for name, key in (("hit rate", "hit_rate"), ("KV active ratio", "kv_active_ratio")):
        fig.add_scatter(x=xs, y=[r.get(key) or 0 for r in rows], mode="lines+markers", name=name)
    _reported(fig, res.get("reported_hit_rate"))
    fig.update_layout(title="KV retention timeout trade-off", yaxis_title="ratio")
    fig.update_xaxes(type="log", title="timeout (s)")
    return [fig]


def _kv_sim(res: dict[str, Any]) -> list[go.Figure | None]:
    grid = res.get("grid") or []
    if not grid:
        return []
    fig = go.Figure()
    for r in grid:
        fig.add_scatter(
            x=[r.get("idle_token_hours")],
            y=[r.get("hit_rate") or 0],
            mode="markers",
            marker={"size": 10},
            name=f"{r.get('policy')} @ {r.get('capacity_tokens') or 'inf'} tokens",
        )
    _reported(fig, res.get("reported_hit_rate"))
    fig.update_layout(title="KV cache: hit rate against idle storage", yaxis_title="hit rate")
    fig.update_xaxes(title="idle KV storage (token-hours)")
    return [fig]


_FIGURES: dict[str, Callable[[dict[str, Any]], list[go.Figure | None]]] = {
    "tokens": _tokens,
    "growth": _growth,
    "timing": _timing,
    "tools": _tools,
    "kv_timeout": _kv_timeout,
    "kv_sim": _kv_sim,
}


def figures(results: dict[str, Any]) -> list[go.Figure]:
    """The interactive figures of `analysis.run.run` results, in the analyses' order."""
    out: list[go.Figure] = []
    for name, entry in results.items():
        build = _FIGURES.get(name)
        if build is not None:
            out += [f for f in build(entry["all"]) if f is not None]
    for f in out:
        f.update_layout(template="plotly_white", height=380, margin={"t": 50, "b": 50})
    return out


def analysis_figures(engine: Engine, flt: Filter) -> str:
    """The analysis page's data as JSON text: the overview numbers and each figure (plotly's
    JSON), over the rounds of the store `flt` lets through (`{"rounds": 0}` when none do)."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        result = analyze(url, flt=flt, engine=engine)
    except InputError as exc:
        if not exc.nothing:
            raise
        return json.dumps({"rounds": 0, "filter": flt.describe(), "figures": []})
    overview = result.data().get("overview", {}).get("all", {})
    figs = ",".join(pio.to_json(f, validate=False) for f in figures(result.results))
    rounds = overview.get("llm_rounds_total")
    head = json.dumps(
        {"rounds": rounds, "filter": flt.describe(), "overview": overview}, default=str
    )
    return head[:-1] + f',"figures":[{figs}]}}'
