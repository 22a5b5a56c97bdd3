"""Run analyses over a loaded dataset: all rows, then each group when grouping is asked for.

Returns plain JSON-able results; rendering and figures are left to the caller (cli/report).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracetap.analysis._stats import clean
from tracetap.analysis.load import Dataset
from tracetap.analysis.registry import ANALYSES, get

__all__ = ["run", "public"]


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
