"""Rendering helpers: rich tables for the terminal and titled, captioned PNG figures
(matplotlib, Agg); the HTML report is analysis.html's.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from rich import box
from rich.table import Table

from tracetap.analysis.units import duration, human, unit_of

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
    "figure_text",
    "fit_width",
    "side_by_side",
    "fmt",
]


def fmt(v: object, unit: str = "num") -> str:
    """A cell: `v` in human units (units.human)."""
    return human(v, unit)


def _cell_unit(key: str, parent: str, unit: str | None) -> str:
    if unit is not None and unit_of(key) != "count":
        return unit
    return unit_of(key, parent)


def _table(title: str, **kw: Any) -> Table:
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        min_width=len(title),  # a title is not squeezed into a narrow table
        **kw,
    )


def _numbers_whole(table: Table) -> Table:
    """Right-aligned (number) columns never shrink below their widest cell, so a narrow
    terminal wraps the text columns and headers but never cuts a number."""
    for col in table.columns:
        if col.justify == "right":
            cells = [len(str(c)) for c in col.cells]
            col.min_width = max(cells, default=1)
            col.overflow = "fold"
        else:
            col.overflow = "ellipsis"
            col.min_width = min(8, max((len(str(c)) for c in col.cells), default=1))
    return table


def fit_width(table: Table, width: int) -> list[Table]:
    """`table` as it fits `width` columns: itself, or, when its numbers cannot all fit side by
    side, several tables that each repeat the first column and carry as many number columns as
    fit (so a number is never cut)."""
    first, rest = table.columns[0], table.columns[1:]

    def need(col: Any) -> int:  # its narrowest width and the padding around it
        return (col.min_width or 1) + 3

    if sum(need(c) for c in table.columns) <= width or not rest:
        return [table]
    parts: list[list[Any]] = [[]]
    used = need(first)
    for col in rest:
        if parts[-1] and used + need(col) > width:
            parts.append([])
            used = need(first)
        parts[-1].append(col)
        used += need(col)
    out = []
    for i, cols in enumerate(parts):
        title = str(table.title or "") + ("" if i == 0 else " (continued)")
        t = _table(title, show_header=table.show_header)
        for col in (first, *cols):
            t.add_column(col.header, justify=col.justify, style=col.style)
        cells = [list(c.cells) for c in (first, *cols)]
        for r in range(table.row_count):
            t.add_row(*[c[r] for c in cells])
        out.append(_numbers_whole(t))
    return out


def side_by_side(tables: dict[str, Table]) -> list[Table]:
    """The same table rendered for several results (all rows, then each group) as comparison
    tables whose columns are the results: one for a metric/value table, else one per value
    column (rows: the first column's labels).

    Example: side_by_side({"this trace": t_all, "claude": t_claude, "codex": t_codex})
    """
    names = list(tables)
    first = tables[names[0]]
    columns = {n: [list(c.cells) for c in t.columns] for n, t in tables.items()}
    labels: list[str] = []
    for cols in columns.values():
        labels += [str(x) for x in cols[0] if str(x) not in labels] if cols else []
    out = []
    kv = not first.show_header and len(first.columns) == 2
    value_columns = (
        [(1, "")] if kv else [(j, str(c.header)) for j, c in enumerate(first.columns) if j > 0]
    )
    for j, header in value_columns:
        title = str(first.title or "") + (f": {header}" if header else "")
        t = _table(title)
        t.add_column(str(first.columns[0].header) if not kv else "metric")
        for n in names:
            t.add_column(n, justify="right")
        for lab in labels:
            row = [lab]
            for n in names:
                cols = columns[n]
                by = dict(zip((str(x) for x in cols[0]), cols[j])) if len(cols) > j else {}
                row.append(str(by.get(lab, "–")))
            t.add_row(*row)
        out.append(_numbers_whole(t))
    return out


def kv_table(title: str, data: dict[str, Any], *, unit: str | None = None) -> Table:
    """Metric / value rows; each value in the unit its key says (or `unit`)."""
    t = _table(title, show_header=False)
    t.add_column("key", style="bold", overflow="fold")
    t.add_column("value", justify="right")
    for k, v in data.items():
        if not str(k).startswith("_") and not isinstance(v, (dict, np.ndarray)):
            t.add_row(str(k), fmt(v, _cell_unit(str(k), "", unit)))
    return _numbers_whole(t)


def records_table(
    title: str,
    records: dict[str, dict[str, Any]],
    *,
    key: str,
    transpose: bool = False,
    unit: str | None = None,
) -> Table:
    """One row per record (one column per record with `transpose`); a cell's unit comes from
    its field's name, else its record's (or `unit`)."""
    cols: list[str] = []
    for rec in records.values():
        cols += [c for c in rec if c not in cols]
    t = _table(title)
    if transpose:
        t.add_column(key)
        for name in records:
            t.add_column(str(name), justify="right")
        for c in cols:
            t.add_row(
                c,
                *[fmt(rec.get(c), _cell_unit(c, str(n), unit)) for n, rec in records.items()],
            )
        return _numbers_whole(t)
    t.add_column(key)
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right")  # a narrow header wraps at words
    for name, rec in records.items():
        t.add_row(str(name), *[fmt(rec.get(c), _cell_unit(c, str(name), unit)) for c in cols])
    return _numbers_whole(t)


def list_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """One row per item; text columns left, numbers right in their units."""
    t = _table(title)
    cols = list(rows[0]) if rows else []
    for c in cols:
        text = all(isinstance(r.get(c), str) for r in rows)
        t.add_column(c.replace("_", " "), justify="left" if text else "right")
    for r in rows:
        t.add_row(*[fmt(r.get(c), unit_of(c)) for c in cols])
    return _numbers_whole(t)


def _fig(title: str) -> tuple[ModuleType, Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=80)
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _save(plt: ModuleType, fig: Figure, fig_dir: Path, name: str, title: str, caption: str) -> Path:
    """Write the PNG with its title and caption in its text chunks (read by `figure_text`)."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    path = fig_dir / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, metadata={"Title": title, "Description": caption})
    plt.close(fig)
    return path


def figure_text(path: Path) -> tuple[str, str]:
    """The (title, caption) a figure was saved with."""
    from PIL import Image

    with Image.open(path) as img:
        text = dict(getattr(img, "text", {}))
    return text.get("Title", Path(path).stem), text.get("Description", "")


def _percent_axis(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


_CLIP_FROM = 200  # values from which a linear histogram is clipped to its 1st-99th percentile


def hist_plot(
    fig_dir: Path,
    name: str,
    series: dict[str, np.ndarray],
    xlabel: str,
    *,
    log: bool,
    title: str,
    caption: str,
    vline: tuple[float, str] | None = None,
) -> Path:
    """Histogram(s); log: log-spaced bins on a log axis (non-positive values left out and
    counted in the caption); else, from 200 values on, the axis is clipped to the 1st-99th
    percentile and the values outside it are counted in the caption."""
    plt, fig, ax = _fig(title)
    notes = []
    for label, values in series.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if log:
            dropped = int((v <= 0).sum())
            v = v[v > 0]
            if dropped:
                notes.append(f"{dropped:,} {label} values ≤ 0 not shown")
            if v.size:
                bins = np.logspace(np.log10(v.min()), np.log10(v.max()) + 1e-9, 50)
                # matplotlib's stub wants a Sequence for `bins`; it takes any array (documented)
                ax.hist(v, bins=bins, alpha=0.6, label=label)  # type: ignore[arg-type]
            ax.set_xscale("log")
        elif v.size >= _CLIP_FROM:
            lo, hi = np.percentile(v, [1, 99])
            inside = v[(v >= lo) & (v <= hi)]
            outside = v.size - inside.size
            if outside:
                notes.append(
                    f"{outside:,} outliers outside [{human(lo, 'tokens')}, "
                    f"{human(hi, 'tokens')}] not shown (max {human(v.max(), 'tokens')}, "
                    f"min {human(v.min(), 'tokens')})"
                )
            ax.hist(inside, bins=50, alpha=0.6, label=label)
        elif v.size:
            ax.hist(v, bins=50, alpha=0.6, label=label)
    if vline is not None:
        ax.axvline(vline[0], linestyle="--", color="grey", label=vline[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if len(series) > 1 or vline is not None:
        ax.legend(fontsize=8)
    full = caption + ("" if not notes else " " + "; ".join(notes) + ".")
    return _save(plt, fig, fig_dir, name, title, full)


def bar_plot(
    fig_dir: Path,
    name: str,
    labels: list[str],
    series: dict[str, list[float]],
    ylabel: str,
    *,
    title: str,
    caption: str,
    percent: bool = False,
    hline: tuple[float, str] | None = None,
    zoom: bool = False,
) -> Path:
    """Grouped bars: one group per label, one bar per series; `zoom` starts the y axis just
    below the smallest bar (said in the caption) so close values stay apart."""
    plt, fig, ax = _fig(title)
    x = np.arange(len(labels))
    w = 0.8 / max(len(series), 1)
    for i, (label, ys) in enumerate(series.items()):
        ax.bar(x + i * w, ys, w, label=label)
    ax.set_xticks(x + w * (len(series) - 1) / 2, labels)
    if hline is not None:
        ax.axhline(hline[0], linestyle="--", color="grey", label=hline[1])
    if percent:
        _percent_axis(ax)
    values = [y for ys in series.values() for y in ys] + ([hline[0]] if hline else [])
    if zoom and values and min(values) > 0.1:
        low = max(0.0, min(values) - 0.05 * (max(values) - min(values) + 0.1))
        ax.set_ylim(low, max(values) + 0.02)
        caption += f" The y axis starts at {human(low, 'pct') if percent else human(low)}."
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, fig_dir, name, title, caption)


def line_plot(
    fig_dir: Path,
    name: str,
    xs: list[float],
    series: dict[str, list[float]],
    xlabel: str,
    ylabel: str,
    *,
    title: str,
    caption: str,
    hline: float | None = None,
    seconds_axis: bool = False,
    percent: bool = False,
) -> Path:
    """Lines over a log x axis (x ticks as durations with `seconds_axis`)."""
    plt, fig, ax = _fig(title)
    for label, ys in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    if hline is not None:
        ax.axhline(hline, linestyle="--", color="grey", label="reported hit rate")
    ax.set_xscale("log")
    if seconds_axis:
        from matplotlib.ticker import FixedLocator, NullLocator

        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([duration(x) for x in xs], fontsize=8)
    if percent:
        _percent_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _save(plt, fig, fig_dir, name, title, caption)
