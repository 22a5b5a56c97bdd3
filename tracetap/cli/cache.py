"""`tracetap cache`: measured prefix reuse (block hash chains) beside the provider's cached tokens.

A thin wrapper over tokens.report.cache: per round for one session, or a line per session;
`--json` writes the fidelity report as JSON lines (one object per round, then a summary).
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


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def cache(
    session: Annotated[
        str | None, typer.Argument(help="Session id, provider:id or unique prefix.")
    ] = None,
    all_sessions: Annotated[bool, typer.Option("--all", help="Summarize every session.")] = False,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """Compare reported cached tokens with measured prefix reuse, and say why they differ.

    --json writes JSON lines: one object per round, then one summary object.

    Example: tracetap cache claude:4f1c2a
    """
    from sqlalchemy.orm import Session

    from tracetap.tokens import report as prefix_report
    from tracetap.tokens.report import (
        CAUSES,
        REASONS,
        cache_totals,
        fidelity_rows,
        fidelity_summary,
        miss_causes,
    )

    if not session and not all_sessions:
        raise typer.BadParameter("give a SESSION or --all")
    with Session(open_db(db)) as s:
        try:
            report = prefix_report.cache(s, None if all_sessions else session)
        except LookupError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    if as_json:  # JSON lines: one object per round, then one summary object
        for row in fidelity_rows(report):
            typer.echo(json.dumps(row))
        typer.echo(json.dumps(fidelity_summary(report)))
        return
    summary = fidelity_summary(report)
    if all_sessions:
        table = Table(
            title=f"prefix reuse, {len(report)} sessions (input = total, cache reads and writes "
            "included; measured = tracetap's tokens)"
        )
        for col in (
            "session",
            "rounds",
            "prompt tok (est)",
            "measured reuse",
            "cache read / input total",
            "agree",
            "reasons",
        ):
            table.add_column(col, justify="left" if col in ("session", "reasons") else "right")
        for rep in report:
            totals = cache_totals(rep["rounds"])
            prompt = totals["prompt_tokens"]
            part = fidelity_summary([rep])
            table.add_row(
                rep["session"],
                str(totals["rounds"]),
                f"{prompt:,}",
                _pct(totals["measured_prefix_tokens"], prompt),
                _pct(part["cache_read_tokens"], part["input_tokens_total"]),
                f"{part['agree_within_tolerance']}/{part['compared_rounds']}",
                ", ".join(f"{k} {v}" for k, v in part["reasons"].items()),
            )
    else:
        rep = report[0]
        table = Table(
            title=f"{rep['session']}  provider cache vs measured prefix (measured in tokens of "
            f"{rep['rounds'][0]['tokenizer'] if rep['rounds'] else '-'}; input total includes "
            "cache reads and writes, uncached excludes both)"
        )
        for col in (
            "#",
            "kind",
            "input total",
            "uncached",
            "cache read",
            "write 5m/1h",
            "prompt (est)",
            "reuse prev",
            "reuse any",
            "breakpoints",
            "gap s",
            "break",
            "reason",
        ):
            table.add_column(col, justify="left" if col in ("kind", "break", "reason") else "right")
        for r in rep["rounds"]:
            bps = r["breakpoints"]
            table.add_row(
                str(r["round"]),
                r["kind"] or "-",
                _n(r["input_tokens_total"]),
                _n(r["input_tokens_uncached"]),
                "-"
                if r["cache_read_tokens"] is None
                else f"{r['cache_read_tokens']:,} "
                f"({_pct(r['cache_read_tokens'], r['input_tokens_total'])})",
                f"{_n(r['cache_creation_5m_tokens'])}/{_n(r['cache_creation_1h_tokens'])}",
                _n(r["prompt_tokens_estimated"]),
                f"{_n(r['measured_prefix_prev_tokens'])} "
                f"({_pct(r['measured_prefix_prev_tokens'], r['prompt_tokens_estimated'])})",
                _n(r["measured_prefix_any_tokens"]),
                "?" if bps is None else ",".join(f"{b:,}" for b in bps) or "none",
                "-" if r["gap_s"] is None else f"{r['gap_s']:.0f}",
                r["prefix_break"] or "-",
                r["reason"] or "",
            )
    out.print(table)
    compared = summary["compared_rounds"]
    if compared:
        out.print(
            f"agree within the tokenizer tolerance: {summary['agree_within_tolerance']}"
            f"/{compared} rounds"
        )
    for reason, n in summary["reasons"].items():
        out.print(f"{reason}: {n}  ({REASONS[reason]})")
    for cause, n in miss_causes(r for rep in report for r in rep["rounds"]).most_common():
        out.print(f"prefix {cause}: {n}  ({CAUSES[cause]})")


def register(app: typer.Typer) -> None:
    app.command("cache")(cache)
