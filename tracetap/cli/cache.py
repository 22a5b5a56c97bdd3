"""`tracetap cache`: measured prefix reuse (block hash chains) beside the provider's cached tokens.

Per round for one session, or one line per session with `--all`; miss causes counted.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
    db: Annotated[
        str | None, typer.Option(help="Database URL (default: the local SQLite store).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Compare reported cached tokens with measured prefix reuse, and say why they differ.

    Example: tracetap cache claude:4f1c2a
    """
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from tracetap.storage import models as m
    from tracetap.cli.store import _engine
    from tracetap.storage.queries import find_session
    from tracetap.tokens.report import CAUSES, round_prefix_info

    if not session and not all_sessions:
        raise typer.BadParameter("give a SESSION or --all")
    engine = _engine(db)
    with Session(engine) as s:
        if all_sessions:
            sessions = list(s.scalars(sa.select(m.Session).order_by(m.Session.id)))
        else:
            try:
                sessions = [find_session(s, session or "")]
            except LookupError as exc:
                err.print(f"[red]error:[/red] {exc}")
                raise typer.Exit(1) from None
        report: list[dict[str, Any]] = []
        for sess in sessions:
            rounds = list(
                s.scalars(
                    sa.select(m.Round)
                    .where(m.Round.session_pk == sess.id)
                    .order_by(m.Round.request_at, m.Round.id)
                )
            )
            info = round_prefix_info(s, [r.id for r in rounds])
            rows = [
                dict(info[r.id], round=i, kind=r.kind) for i, r in enumerate(rounds) if r.id in info
            ]
            report.append(
                {
                    "session": f"{sess.provider}:{sess.agent_session_id}",
                    "rounds": rows,
                    "untokenized_rounds": len(rounds) - len(rows),
                }
            )
    if as_json:
        out.print_json(json.dumps(report))
        return
    causes: Counter[str] = Counter()
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
            rs = rep["rounds"]
            c = Counter(r["cause"] for r in rs if r["cause"])
            causes.update(c)
            prompt = sum(r["prompt_tokens"] for r in rs)
            measured = sum(r["measured_prefix_tokens"] for r in rs)
            cached = sum(r["reported_cached_tokens"] or 0 for r in rs)
            total = sum(r["reported_input_tokens"] or 0 for r in rs)
            table.add_row(
                rep["session"],
                str(len(rs)),
                f"{prompt:,}",
                _pct(measured, prompt),
                _pct(cached, total),
                ", ".join(f"{k} {v}" for k, v in c.most_common()),
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
            if r["cause"]:
                causes[r["cause"]] += 1
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
