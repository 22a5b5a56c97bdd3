"""`tracetap analyze`: run the TraceLab suite and the four optimization studies on a trace.

A thin wrapper over analysis.run.analyze; output is tables, JSON, PNG figures or an HTML report.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
    from tracetap.analysis.load import GROUP_KEYS, InputError
    from tracetap.analysis.registry import ANALYSES
    from tracetap.analysis.run import analyze as run_analysis

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
        with _feedback(err) as progress:
            result = run_analysis(
                source,
                group_by=group_by,
                only=list(only or []),
                opts=opts,
                max_groups=max_groups,
                progress=progress,
            )
    except InputError as exc:
        from tracetap.storage.db import hide_passwords

        err.print(f"[red]error:[/] {hide_passwords(str(exc), source)}")  # a store's URL
        raise typer.Exit(1) from None
    fig_root = plots or (Path(tempfile.mkdtemp(prefix="tracetap-figs-")) if html_file else None)
    sections = result.sections(fig_root)
    if html_file is not None:
        result.write_html(html_file, sections)
    if as_json:
        typer.echo(json.dumps(result.data(), indent=2, default=str))
        return
    out = Console()
    for heading, tables, _ in sections:
        out.rule(heading)
        for t in tables:
            out.print(t)


@contextmanager
def _feedback(err: Console) -> Iterator[Callable[[str, int], None] | None]:
    """On a terminal, a spinner while the trace loads, then a progress bar fed by the progress
    callback this yields (its first call gives the step count); elsewhere nothing (None)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress, TaskID

    status = err.status("loading trace", spinner="dots")
    bar = Progress(console=err, transient=True)
    task: list[TaskID] = []

    def step(name: str, n: int) -> None:
        if not task:
            status.stop()
            bar.start()
            task.append(bar.add_task("analysing", total=None))
        if name:
            bar.update(task[0], advance=n, description=name)
        else:
            bar.update(task[0], total=n)

    status.start()
    try:
        yield step
    finally:
        status.stop()
        bar.stop()


def register(app: typer.Typer) -> None:
    """Add the `analyze` command."""
    app.command("analyze")(analyze)
