"""Run analyses over a trace: all rows, then each group when grouping is asked for.

`analyze` loads and runs; its `Analysis` gives JSON data, table/figure sections and HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracetap.analysis._stats import clean
from tracetap.analysis.load import Dataset, load
from tracetap.analysis.registry import ANALYSES, get

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from tracetap.storage.filters import Filter

__all__ = ["Analysis", "Section", "analyze", "public", "run"]

# One analysis as shown: its title, its rich tables (and group headings), its PNG figures.
Section = tuple[str, list[Any], list[Path]]


def run(
    ds: Dataset,
    names: list[str] | None = None,
    opts: dict[str, Any] | None = None,
    *,
    max_groups: int = 12,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """{name: {"all": result, "groups": {value: result}}}; private `_` keys kept for plots.

    `progress(name, steps)` is called first with the total step count (name "") and then after
    each computed step.
    """
    opts = opts or {}
    selected = [get(n) for n in (names or list(ANALYSES))]
    groups, n_groups = ds.groups(max_groups) if ds.group_by else ([], 0)
    out: dict[str, Any] = {}
    if progress:
        progress("", sum(1 + (len(groups) if mod.GROUPED else 0) for mod in selected))
    for mod in selected:
        ds.select(None)
        entry: dict[str, Any] = {"title": mod.TITLE, "all": mod.compute(ds, opts)}
        if progress:
            progress(mod.NAME, 1)
        if ds.group_by and mod.GROUPED:
            entry["groups"] = {}
            for g in groups:
                ds.select(g)
                entry["groups"][g] = mod.compute(ds, opts)
                if progress:
                    progress(f"{mod.NAME} [{g}]", 1)
            entry["groups_shown"] = f"{len(groups)} of {n_groups}"
        ds.select(None)
        out[mod.NAME] = entry
    return out


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def public(results: dict[str, Any]) -> dict[str, Any]:
    """Results without private arrays, as plain JSON types."""
    return clean(_strip(results))


@dataclass
class Analysis:
    """What `analyze` found in a trace: the results per analysis and the loaded dataset."""

    source: str
    dataset: Dataset
    results: dict[str, Any]

    def data(self) -> dict[str, Any]:
        """The results as plain JSON types, with `_input` saying what the input held."""
        ds = self.dataset
        data = public(self.results)
        data["_input"] = {
            "source": self.source,
            "kind": ds.kind,
            "has_tool_input": ds.has_input,
            "has_segments": ds.has_segments,
            "has_block_hashes": ds.has_hashes,
            "group_by": ds.group_by,
            "filter": ds.filter.as_dict(),
        }
        return data

    def sections(self, fig_dir: Path | None = None) -> list[Section]:
        """Each analysis's tables (all rows, then each group) and, given `fig_dir`, the PNG
        figures of all rows it writes there."""
        sections: list[Section] = []
        for name, entry in self.results.items():
            mod = ANALYSES[name]
            figures: list[Path] = []
            if fig_dir is not None and hasattr(mod, "plot"):
                figures = mod.plot(entry["all"], fig_dir)
            tables = list(mod.render(entry["all"]))
            groups = entry.get("groups", {})
            if groups:
                tables = _compare(tables, {g: list(mod.render(r)) for g, r in groups.items()})
            sections.append((entry["title"], tables, figures))
        return sections

    def figures(self, fig_dir: Path) -> dict[str, dict[str, list[Path]]]:
        """{analysis: {"all" or a group: PNG paths}}: all rows' figures in `fig_dir`, each
        group's in a folder of its own below it."""
        out: dict[str, dict[str, list[Path]]] = {}
        for name, entry in self.results.items():
            mod = ANALYSES[name]
            if not hasattr(mod, "plot"):
                continue
            out[name] = {"all": mod.plot(entry["all"], fig_dir)}
            for i, (g, res) in enumerate(entry.get("groups", {}).items()):
                sub = Path(fig_dir) / f"{self.dataset.group_by}-{i + 1:02d}-{_slug(g)}"
                out[name][g] = mod.plot(res, sub)
        return out

    def write_html(
        self,
        path: Path,
        figures: dict[str, dict[str, list[Path]]],
        *,
        extra_sections: list[tuple[str, str, str]] | None = None,
    ) -> None:
        """Write the report (analysis.html.report_html) to `path`, figures embedded."""
        from tracetap import __version__
        from tracetap.analysis.html import report_html

        text = report_html(self, figures, version=__version__, extra_sections=extra_sections or ())
        path.write_text(text, encoding="utf-8")


def _compare(all_rows: list[Any], groups: dict[str, list[Any]]) -> list[Any]:
    """Each table of all rows beside the same table of every group (report.side_by_side);
    a table a group does not have is shown for all rows alone."""
    from rich.table import Table

    from tracetap.analysis.report import side_by_side

    out: list[Any] = []
    for i, table in enumerate(all_rows):
        same = {
            g: ts[i]
            for g, ts in groups.items()
            if i < len(ts) and isinstance(ts[i], Table) and ts[i].title == table.title
        }
        if isinstance(table, Table) and len(same) == len(groups):
            out += side_by_side({"this trace": table, **same})
        else:
            out.append(table)
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))[:40]


def analyze(
    source: str,
    *,
    group_by: str | None = None,
    flt: Filter | None = None,
    engine: Engine | None = None,
    only: list[str] | None = None,
    opts: dict[str, Any] | None = None,
    max_groups: int = 12,
    progress: Callable[[str, int], None] | None = None,
    load_progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Load a trace (TraceLab JSONL/.gz, TraceLab DuckDB file or store URL, read through
    `engine` when given), keep the rounds that pass `flt`, and run the analyses named in `only`
    (default: all) over it; `progress` is as for `run`, `load_progress` as for `load`. Raises
    InputError when the source cannot be read or no round passes.

    Example: analyze("trace.jsonl.gz", group_by="provider").data()["overview"]
    """
    ds = load(source, group_by=group_by, flt=flt, engine=engine, progress=load_progress)
    results = run(ds, only or None, opts, max_groups=max_groups, progress=progress)
    return Analysis(source, ds, results)
