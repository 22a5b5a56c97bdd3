"""`tracetap cache`: measured prefix reuse (block hash chains) beside the provider's cached tokens.

A thin wrapper over tokens.report.cache: per round for one session, or a line per session.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tracetap.cli.options import AsJson, Db, open_db

__all__ = ["register"]

out = Console()
err = Console(stderr=True)


def _pct(a: int | None, b: int | None) -> str:
    return "-" if not b or a is None else f"{100 * a / b:.0f}%"


def cache(
    session: Annotated[
        str | None, typer.Argument(help="Session id, provider:id or unique prefix.")
    ] = None,
    all_sessions: Annotated[bool, typer.Option("--all", help="Summarize every session.")] = False,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """Compare reported cached tokens with measured prefix reuse, and say why they differ.

    Example: tracetap cache claude:4f1c2a
    """
    from sqlalchemy.orm import Session

    from tracetap.tokens import report as prefix_report
    from tracetap.tokens.report import CAUSES, cache_totals, miss_causes

    if not session and not all_sessions:
        raise typer.BadParameter("give a SESSION or --all")
    with Session(open_db(db)) as s:
        try:
            report = prefix_report.cache(s, None if all_sessions else session)
        except LookupError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    if as_json:
        out.print_json(json.dumps(report))
        return
    causes = miss_causes(r for rep in report for r in rep["rounds"])
    if all_sessions:
        table = Table(title=f"prefix reuse, {len(report)} sessions")
        for col in (
            "session",
            "rounds",
            "prompt tok (est)",
            "measured reuse",
            "reported cached",
            "misses",
        ):
            table.add_column(col, justify="left" if col in ("session", "misses") else "right")
        for rep in report:
            totals = cache_totals(rep["rounds"])
            prompt = totals["prompt_tokens"]
            table.add_row(
                rep["session"],
                str(totals["rounds"]),
                f"{prompt:,}",
                _pct(totals["measured_prefix_tokens"], prompt),
                _pct(totals["reported_cached_tokens"], totals["reported_input_tokens"]),
                ", ".join(f"{k} {v}" for k, v in miss_causes(rep["rounds"]).most_common()),
            )
    else:
        rep = report[0]
        table = Table(
            title=f"{rep['session']}  prefix reuse (tokens estimated by "
            f"{rep['rounds'][0]['tokenizer'] if rep['rounds'] else '-'})"
        )
        for col in (
            "#",
            "kind",
            "prompt",
            "reuse prev",
            "reuse any",
            "reported cached",
            "input",
            "break",
            "cause",
        ):
            table.add_column(col, justify="left" if col in ("kind", "break", "cause") else "right")
        for r in rep["rounds"]:
            table.add_row(
                str(r["round"]),
                r["kind"] or "-",
                f"{r['prompt_tokens']:,}",
                f"{r['measured_prefix_tokens']:,} "
                f"({_pct(r['measured_prefix_tokens'], r['prompt_tokens'])})",
                f"{r['measured_prefix_any_tokens']:,}",
                "-"
                if r["reported_cached_tokens"] is None
                else f"{r['reported_cached_tokens']:,} "
                f"({_pct(r['reported_cached_tokens'], r['reported_input_tokens'])})",
                "-" if r["reported_input_tokens"] is None else f"{r['reported_input_tokens']:,}",
                r["prefix_break"] or "-",
                r["cause"] or "",
            )
    out.print(table)
    for cause, n in causes.most_common():
        out.print(f"{cause}: {n}  ({CAUSES[cause]})")


def register(app: typer.Typer) -> None:
    app.command("cache")(cache)
