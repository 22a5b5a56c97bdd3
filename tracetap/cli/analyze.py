"""`tracetap analyze`: run the TraceLab suite and the four optimization studies on a trace.

A thin wrapper over analysis.run.analyze; output is tables, JSON, PNG figures or an HTML report.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tracetap.cli.errors import MISTAKE, NOTHING, UserError
from tracetap.cli.options import (
    Agent,
    Model,
    Project,
    Session,
    Since,
    Until,
    make_filter,
    no_match,
    open_store,
)

__all__ = ["register", "analyze"]

# The analyses --only takes (the registry's names, kept here so --help needs no heavy import).
_NAMES = (
    "overview, tokens, growth, timing, tools, kv_timeout, tool_overhead, append_prefill, "
    "latency_predict, kv_sim"
)


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


def _writable(option: str, path: Path, *, directory: bool) -> None:
    """Raise UserError (exit 2) when `path` cannot be written: checked before any work, so a
    bad path costs nothing and nothing is created."""
    if directory and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: a file is in the way — name a folder")
    if not directory and path.is_dir():
        raise UserError(f"{option} {path}: is a folder — name the report's file")
    parent = path if directory else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is not a folder — choose a writable path")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{option} {path}: {parent} is not writable — choose a writable path")


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
        list[str] | None, typer.Option(help=f"Run only this analysis (repeatable): {_NAMES}.")
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
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
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
    flt = make_filter(since, until, agent, model, project, session)
    if html_file is not None:
        _writable("--html", html_file, directory=False)
    if plots is not None:
        _writable("--plots", plots, directory=True)
    engine = open_store(source) if "://" in source else None
    err = Console(stderr=True)
    try:
        with _feedback(err) as (load_progress, progress), warnings.catch_warnings():
            # empty groups give NaN summaries, shown as "–"; numpy's warnings would only repeat it
            warnings.simplefilter("ignore", RuntimeWarning)
            result = run_analysis(
                source,
                group_by=group_by,
                flt=flt,
                engine=engine,
                only=list(only or []),
                opts=opts,
                max_groups=max_groups,
                progress=progress,
                load_progress=load_progress,
            )
    except InputError as exc:
        if exc.nothing and engine is not None and not flt.is_empty():
            raise no_match(flt, source) from None
        from tracetap.storage.db import hide_passwords

        code = NOTHING if exc.nothing else MISTAKE
        raise UserError(hide_passwords(str(exc), source), code) from None
    finally:
        if engine is not None:
            engine.dispose()
    fig_root = plots or (Path(tempfile.mkdtemp(prefix="tracetap-figs-")) if html_file else None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sections = result.sections()
            figures = result.figures(fig_root) if fig_root is not None else {}
            if html_file is not None:
                result.write_html(html_file, figures, extra_sections=_cost_section(result))
    except OSError as exc:
        where = exc.filename or html_file or plots
        raise UserError(f"cannot write {where}: {exc.strerror or exc}") from None
    finally:
        if fig_root is not None and plots is None:
            shutil.rmtree(fig_root, ignore_errors=True)
    if as_json:
        typer.echo(json.dumps(result.data(), indent=2, default=str))
    else:
        from tracetap.analysis.report import fit_width

        out = Console()
        for heading, tables, _ in sections:
            out.rule(heading)
            for t in tables:
                for part in fit_width(t, out.width) if isinstance(t, Table) else [t]:
                    out.print(part)
    if plots is not None:
        n = sum(len(paths) for per in figures.values() for paths in per.values())
        err.print(f"wrote {n} figures to {plots}", soft_wrap=True, highlight=False)
    if html_file is not None:
        err.print(f"wrote the report to {html_file}", soft_wrap=True, highlight=False)


def _cost_section(result: Any) -> list[tuple[str, str, str]]:
    """The report's cost section (analysis.cost), when the rows carry usage."""
    from tracetap.analysis.cost import cost_section

    section = cost_section(result)
    return [] if section is None else [section]


LoadProgress = Callable[[int, int], None]
StepProgress = Callable[[str, int], None]


@contextmanager
def _feedback(
    err: Console,
) -> Iterator[tuple[LoadProgress | None, StepProgress | None]]:
    """On a terminal, progress bars (%, rate, ETA): the store's rounds as they load (the count
    is known), then the analyses' steps; a spinner while a file loads. Elsewhere nothing."""
    if not sys.stderr.isatty():
        yield None, None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def rate(task_name: str, unit: str) -> None:
        task = bar.tasks[tasks[task_name]]
        speed = task.finished_speed or task.speed
        bar.update(tasks[task_name], rate=f"{speed:,.0f} {unit}/s" if speed else "")

    def loading(done: int, total: int) -> None:
        if "load" not in tasks:
            bar.update(tasks["file"], visible=False)
            tasks["load"] = bar.add_task("loading rounds", total=total, rate="")
        bar.update(tasks["load"], completed=done)
        rate("load", "rounds")

    def step(name: str, n: int) -> None:
        if "run" not in tasks:
            for t in tasks.values():
                bar.update(t, visible=False)
            tasks["run"] = bar.add_task("analysing", total=None, rate="")
        if name:
            bar.update(tasks["run"], advance=n, description=name)
            rate("run", "steps")
        else:
            bar.update(tasks["run"], total=n)

    tasks["file"] = bar.add_task("loading trace", total=None, rate="")
    bar.start()
    try:
        yield loading, step
    finally:
        bar.stop()


def register(app: typer.Typer) -> None:
    """Add the `analyze` command."""
    app.command("analyze")(analyze)
