"""`tracetap analyze`: run the TraceLab suite and the four optimization studies on a trace.

Input is a TraceLab JSONL(.gz), a TraceLab DuckDB file or a store URL; output is tables, JSON,
PNG figures or one self-contained HTML report.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register", "analyze"]


def _capacities(text: str) -> list[int | None]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part in ("inf", "none", "unbounded"):
            out.append(None)
            continue
        mult = {"k": 1e3, "m": 1e6, "g": 1e9}.get(part[-1], 1)
        try:
            out.append(int(float(part[:-1] if mult != 1 else part) * mult))
        except ValueError:
            raise typer.BadParameter(
                f"capacity {part!r}: use tokens like 20M, 500k or inf"
            ) from None
    return out


def analyze(
    source: Annotated[
        str,
        typer.Argument(
            help="TraceLab .jsonl/.jsonl.gz, TraceLab .duckdb, "
            "or a store URL (sqlite:///…, postgresql://…)"
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write PNG figures here.")] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Write one self-contained HTML report.")
    ] = None,
    group_by: Annotated[
        str | None, typer.Option(help="provider, model, project or session.")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only this analysis (repeatable).")
    ] = None,
    kv_capacity: Annotated[
        str, typer.Option(help="KV capacities in tokens, comma-separated (e.g. inf,2M).")
    ] = "inf,2M",
    kv_block_size: Annotated[int, typer.Option(help="KV block size in tokens.")] = 16,
    kv_policy: Annotated[
        list[str] | None,
        typer.Option(help="KV policy (repeatable): lru, ttl-5m, ttl-1h, tool-aware."),
    ] = None,
    kv_scope: Annotated[str, typer.Option(help="KV scope: session or global.")] = "session",
    max_groups: Annotated[int, typer.Option(help="Largest groups shown with --group-by.")] = 12,
) -> None:
    """Analyse a recorded trace: TraceLab metrics plus tool overhead, prefill, latency, KV studies.

    Example: tracetap analyze trace.jsonl.gz --group-by provider --html report.html
    """
    from rich.console import Console

    from tracetap.analysis.load import GROUP_KEYS, InputError, load
    from tracetap.analysis.registry import ANALYSES
    from tracetap.analysis.run import public, run

    if group_by is not None and group_by not in GROUP_KEYS:
        raise typer.BadParameter(f"use one of {', '.join(GROUP_KEYS)}", param_hint="--group-by")
    for name in only or []:
        if name not in ANALYSES:
            raise typer.BadParameter(
                f"unknown analysis {name!r}; known: {', '.join(ANALYSES)}", param_hint="--only"
            )
    policies = kv_policy or ["lru", "ttl-5m", "ttl-1h", "tool-aware"]
    for p in policies:
        if p not in ("lru", "ttl-5m", "ttl-1h", "tool-aware"):
            raise typer.BadParameter(f"unknown policy {p!r}", param_hint="--kv-policy")
    if kv_scope not in ("session", "global"):
        raise typer.BadParameter("use session or global", param_hint="--kv-scope")
    opts: dict[str, Any] = {
        "capacities": _capacities(kv_capacity),
        "block_size": kv_block_size,
        "policies": policies,
        "scope": kv_scope,
    }
    err = Console(stderr=True)
    try:
        with err.status("loading trace", spinner="dots") if sys.stderr.isatty() else _Null():
            ds = load(source, group_by=group_by)
        if sys.stderr.isatty():
            from rich.progress import Progress

            with Progress(console=err, transient=True) as bar:
                task = bar.add_task("analysing", total=None)

                def step(name: str, n: int) -> None:
                    if name:
                        bar.update(task, advance=n, description=name)
                    else:
                        bar.update(task, total=n)

                results = run(
                    ds, list(only or []) or None, opts, max_groups=max_groups, progress=step
                )
        else:
            results = run(ds, list(only or []) or None, opts, max_groups=max_groups)
    except InputError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    sections = []
    fig_root = plots or (Path(tempfile.mkdtemp(prefix="tracetap-figs-")) if html_file else None)
    for name, entry in results.items():
        mod = ANALYSES[name]
        figures = []
        if fig_root is not None and hasattr(mod, "plot"):
            figures = mod.plot(entry["all"], fig_root)
        tables = list(mod.render(entry["all"]))
        for g, res in entry.get("groups", {}).items():
            tables += [f"{ds.group_by} = {g}", *mod.render(res)]
        sections.append((entry["title"], tables, figures))
    data = public(results)
    data["_input"] = {
        "source": source,
        "kind": ds.kind,
        "has_tool_input": ds.has_input,
        "has_segments": ds.has_segments,
        "has_block_hashes": ds.has_hashes,
        "group_by": group_by,
    }
    if html_file is not None:
        from tracetap.analysis.report import html_report

        html_file.write_text(
            html_report(f"tracetap analysis of {Path(source).name}", sections), encoding="utf-8"
        )
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    out = Console()
    for heading, tables, _ in sections:
        out.rule(heading)
        for t in tables:
            out.print(t)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def register(app: typer.Typer) -> None:
    """Add the `analyze` command."""
    app.command("analyze")(analyze)
