"""Rendering helpers: rich tables for the terminal, PNG figures (matplotlib, Agg) and one
self-contained HTML report with the figures embedded as data: URIs.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "kv_table",
    "records_table",
    "list_table",
    "hist_plot",
    "bar_plot",
    "line_plot",
    "scatter_plot",
    "fmt",
    "html_report",
]


def fmt(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "–"
        if f.is_integer() and abs(f) >= 1000:
            return f"{int(f):,}"
        return f"{f:,.4g}" if abs(f) < 1e6 else f"{f:,.0f}"
    if isinstance(v, (list, tuple)):
        return "; ".join(fmt(x) for x in v)
    return str(v)


def kv_table(title: str, data: dict[str, Any]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value", justify="right")
    for k, v in data.items():
        if not str(k).startswith("_") and not isinstance(v, (dict, np.ndarray)):
            t.add_row(str(k), fmt(v))
    return t


def records_table(
    title: str, records: dict[str, dict[str, Any]], *, key: str, transpose: bool = False
) -> Table:
    cols: list[str] = []
    for rec in records.values():
        cols += [c for c in rec if c not in cols]
    t = Table(title=title, title_justify="left")
    if transpose:
        t.add_column(key)
        for name in records:
            t.add_column(name, justify="right")
        for c in cols:
            t.add_row(c, *[fmt(rec.get(c)) for rec in records.values()])
        return t
    t.add_column(key)
    for c in cols:
        t.add_column(c, justify="right")
    for name, rec in records.items():
        t.add_row(name, *[fmt(rec.get(c)) for c in cols])
    return t


def list_table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    cols = list(rows[0]) if rows else []
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*[fmt(r.get(c)) for c in cols])
    return t


def _fig() -> tuple[ModuleType, Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=90)
    return plt, fig, ax


def _save(plt: ModuleType, fig: Figure, fig_dir: Path, name: str) -> Path:
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    path = fig_dir / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def hist_plot(
    fig_dir: Path, name: str, series: dict[str, np.ndarray], xlabel: str, *, log: bool
) -> Path:
    plt, fig, ax = _fig()
    for label, values in series.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if log:
            v = v[v > 0]
            if v.size:
                bins = np.logspace(np.log10(v.min()), np.log10(v.max()) + 1e-9, 50)
                # matplotlib's stub wants a Sequence for `bins`; it takes any array (documented)
                ax.hist(v, bins=bins, alpha=0.6, label=label)  # type: ignore[arg-type]
            ax.set_xscale("log")
        elif v.size:
            ax.hist(v, bins=50, alpha=0.6, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()
    return _save(plt, fig, fig_dir, name)


def bar_plot(
    fig_dir: Path, name: str, labels: list[str], series: dict[str, list[float]], ylabel: str
) -> Path:
    plt, fig, ax = _fig()
    x = np.arange(len(labels))
    w = 0.8 / max(len(series), 1)
    for i, (label, ys) in enumerate(series.items()):
        ax.bar(x + i * w, ys, w, label=label)
    ax.set_xticks(x + w * (len(series) - 1) / 2, labels)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _save(plt, fig, fig_dir, name)


def line_plot(
    fig_dir: Path,
    name: str,
    xs: list[float],
    series: dict[str, list[float]],
    xlabel: str,
    ylabel: str,
    *,
    hline: float | None = None,
) -> Path:
    plt, fig, ax = _fig()
    for label, ys in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    if hline is not None:
        ax.axhline(hline, linestyle="--", color="grey", label="reported hit rate")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _save(plt, fig, fig_dir, name)


def scatter_plot(
    fig_dir: Path,
    name: str,
    points: dict[str, tuple[float, float]],
    xlabel: str,
    ylabel: str,
    *,
    hline: float | None = None,
) -> Path:
    plt, fig, ax = _fig()
    for label, (x, y) in points.items():
        ax.scatter([x], [y], label=label)
    if hline is not None:
        ax.axhline(hline, linestyle="--", color="grey", label="reported hit rate")
    if points and min(x for x, _ in points.values()) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return _save(plt, fig, fig_dir, name)


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c.header))}</th>" for c in table.columns)
    cells = [list(c.cells) for c in table.columns]
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(col[i]))}</td>" for col in cells) + "</tr>"
        for i in range(table.row_count)
    )
    title = html.escape(str(table.title or ""))
    thead = f"<thead><tr>{head}</tr></thead>" if table.show_header else ""
    return f"<h3>{title}</h3><table>{thead}<tbody>{body}</tbody></table>"


def html_report(title: str, sections: list[tuple[str, list[Any], list[Path]]]) -> str:
    """One HTML page: per section its tables and its figures inlined as base64 PNG data: URIs."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
        "collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:right}img{max-width:720px;display:block}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, tables, figures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for t in tables:
            parts.append(
                _table_html(t) if isinstance(t, Table) else f"<p>{html.escape(str(t))}</p>"
            )
        for fig in figures:
            data = base64.b64encode(Path(fig).read_bytes()).decode()
            parts.append(
                f"<img alt='{html.escape(Path(fig).stem)}' src='data:image/png;base64,{data}'>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
