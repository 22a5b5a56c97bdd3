"""`tracetap cache`: measured prefix reuse (block hash chains) beside the provider's cached tokens.

A thin wrapper over tokens.report.cache: per round for one session, or a line per session;
`--json` writes the fidelity report as JSON lines (one object per round, then a summary).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from tracetap.cli.errors import NOTHING, UserError
from tracetap.cli.options import (
    Agent,
    AsJsonLines,
    Db,
    Model,
    Project,
    Session,
    Since,
    Until,
    db_url,
    make_filter,
    no_match,
    open_store,
)

__all__ = ["register"]

out = Console()


def _pct(a: int | None, b: int | None) -> str:
    return "-" if not b or a is None else f"{100 * a / b:.0f}%"


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


@dataclass(frozen=True)
class _Col:
    """A table column: numbers never wrap and are never cut; text wraps at spaces. A column
    with a `drop` rank is left out (highest rank first) when the table is wider than the
    terminal."""

    name: str
    number: bool = True
    drop: int = 0
    fold: bool = False  # long ids: folded across lines rather than kept whole


def _min_width(cols: Sequence[_Col], rows: Sequence[Sequence[str]]) -> int:
    """The narrowest the table can be with every number whole: a number column is as wide as
    its widest cell or its header (neither wraps), a text column as its longest word (a folded
    one at most 14); each column adds its padding and a border."""

    def word(text: str) -> int:
        return max((cell_len(w) for w in text.split()), default=0)

    width = 1
    for i, c in enumerate(cols):
        cells = [row[i] for row in rows]
        body = max((cell_len(x) if c.number else word(x) for x in cells), default=0)
        if c.fold:
            body = min(body, 14)
        width += max(body, cell_len(c.name) if c.number else word(c.name)) + 3
    return width


def _fit(cols: Sequence[_Col], rows: Sequence[Sequence[str]]) -> tuple[Table, list[str]]:
    """The table of the columns that fit the terminal, and the names of those left out."""
    keep = list(range(len(cols)))
    while True:
        table = Table()
        for i in keep:
            c = cols[i]
            table.add_column(
                c.name,
                justify="right" if c.number else "left",
                no_wrap=c.number,
                overflow="fold",
            )
        for row in rows:
            table.add_row(*(row[i] for i in keep))
        droppable = [i for i in keep if cols[i].drop]
        if (
            _min_width([cols[i] for i in keep], [[row[i] for i in keep] for row in rows])
            <= (out.width)
            or not droppable
        ):
            return table, [cols[i].name for i in range(len(cols)) if i not in keep]
        keep.remove(max(droppable, key=lambda i: cols[i].drop))


# A session's sources in a word each, for the `source` column (the title names them in full).
_SHORT = {"round_tokens": "tokenizer", "export": "export", "prefix_tokens": "imported"}


def _session_lines(report: list[dict[str, Any]]) -> tuple[str, list[_Col], list[list[str]]]:
    from tracetap.tokens.report import cache_totals, fidelity_summary

    parts = [fidelity_summary([rep]) for rep in report]
    compared = any(p["compared_rounds"] for p in parts)
    sources = sorted({s for p in parts for s in p["sources"]})
    title = (
        f"prefix reuse of {len(report)} session{'s' if len(report) != 1 else ''} from "
        f"{' and '.join(sources) or 'nothing'} (cache read: the provider's cached prefix over "
        "the input total, cache reads and writes included"
    )
    if compared:
        title += "; reuse: the measured reusable prefix in tracetap's own tokens"
    title += ")"
    cols = [
        _Col("session", number=False, fold=True),
        _Col("rounds"),
        _Col("input"),
        _Col("cache read"),
    ]
    if compared:
        cols += [_Col("reuse"), _Col("agree"), _Col("reasons", number=False, drop=2)]
    if len(sources) > 1:
        cols.append(_Col("source", number=False, drop=1))
    rows = []
    for rep, part in zip(report, parts):
        row = [
            rep["session"],
            f"{part['rounds']:,}",
            f"{part['input_tokens_total']:,}",
            "-" if part["prefix_hit_ratio"] is None else f"{part['prefix_hit_ratio']:.0%}",
        ]
        if compared:
            totals = cache_totals(rep["rounds"])
            measured = totals["measured_prefix_tokens"] if part["compared_rounds"] else None
            row += [
                _pct(measured, totals["prompt_tokens"]),
                f"{part['agree_within_tolerance']}/{part['compared_rounds']}"
                if part["compared_rounds"]
                else "-",
                ", ".join(f"{k} {v}" for k, v in part["reasons"].items()),
            ]
        if len(sources) > 1:
            kinds = {r["measured_source"] for r in rep["rounds"]}
            row.append(", ".join(sorted(_SHORT.get(k, k) for k in kinds)))
        rows.append(row)
    return title, cols, rows


def _imported_lines(rep: dict[str, Any]) -> tuple[str, list[_Col], list[list[str]]]:
    """One session whose rounds tracetap never tokenized: TraceLab's prefix figures."""
    source = rep["rounds"][0]["source"]
    title = (
        f"{rep['session']}  prefix reuse from {source} (the provider's cache reads as recorded; "
        "tracetap did not tokenize these prompts)"
    )
    cols = [
        _Col("#"),
        _Col("kind", number=False, drop=2),
        _Col("input"),
        _Col("prefix"),
        _Col("new"),
        _Col("hit"),
        _Col("gap s", drop=1),
    ]
    rows = [
        [
            str(r["round"]),
            r["kind"] or "-",
            _n(r["input_tokens_total"]),
            _n(r["prefix_tokens"]),
            _n(r["newly_append_tokens"]),
            "-" if r["prefix_hit_ratio"] is None else f"{r['prefix_hit_ratio']:.0%}",
            "-" if r["gap_s"] is None else f"{r['gap_s']:.0f}",
        ]
        for r in rep["rounds"]
    ]
    return title, cols, rows


def _round_lines(rep: dict[str, Any]) -> tuple[str, list[_Col], list[list[str]]]:
    """One session's rounds: the provider's cache beside tracetap's measured prefix."""
    tokenizers = sorted({r["tokenizer"] for r in rep["rounds"] if r["tokenizer"]})
    title = (
        f"{rep['session']}  provider cache vs measured prefix (input: the total, cache reads "
        "and writes included; uncached excludes both; prompt and reuse: measured in tokens of "
        f"{', '.join(tokenizers) or '-'})"
    )
    cols = [
        _Col("#"),
        _Col("kind", number=False, drop=4),
        _Col("input"),
        _Col("uncached", drop=3),
        _Col("cache read"),
        _Col("write 5m/1h", drop=5),
        _Col("prompt"),
        _Col("reuse prev"),
        _Col("reuse any", drop=6),
        _Col("breakpoints", number=False, drop=7),
        _Col("gap s", drop=1),
        _Col("break", number=False, drop=2),
        _Col("reason", number=False),
    ]
    rows = []
    for r in rep["rounds"]:
        bps = r["breakpoints"]
        read = r["cache_read_tokens"]
        reuse = r["measured_prefix_prev_tokens"]
        rows.append(
            [
                str(r["round"]),
                r["kind"] or "-",
                _n(r["input_tokens_total"]),
                _n(r["input_tokens_uncached"]),
                "-" if read is None else f"{read:,} ({_pct(read, r['input_tokens_total'])})",
                f"{_n(r['cache_creation_5m_tokens'])}/{_n(r['cache_creation_1h_tokens'])}",
                _n(r["prompt_tokens_estimated"]),
                "-"
                if reuse is None
                else f"{reuse:,} ({_pct(reuse, r['prompt_tokens_estimated'])})",
                _n(r["measured_prefix_any_tokens"]),
                "?" if bps is None else ", ".join(f"{b:,}" for b in bps) or "none",
                "-" if r["gap_s"] is None else f"{r['gap_s']:.0f}",
                r["prefix_break"] or "-",
                r["reason"] or ("" if r["measured_source"] != "prefix_tokens" else r["source"]),
            ]
        )
    return title, cols, rows


def _find(db: Any, report_cache: Any, target: str | None, flt: Any) -> list[dict[str, Any]]:
    try:
        return list(report_cache(db, target, flt))
    except LookupError as exc:
        several = "several" in str(exc)
        raise UserError(str(exc), 2 if several else NOTHING) from None


def cache(
    target: Annotated[
        str | None,
        typer.Argument(metavar="SESSION", help="Session id, provider:id or unique prefix."),
    ] = None,
    all_sessions: Annotated[
        bool, typer.Option("--all", help="A line per session (also implied by a filter).")
    ] = False,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    db: Db = None,
    as_json: AsJsonLines = False,
) -> None:
    """Compare reported cached tokens with measured prefix reuse, and say why they differ.

    Recorded rounds: measured with tracetap's own tokenizer.

    Imported rounds (TraceLab, agent logs): shown from their prefix_tokens, as the title says.

    --json: JSON lines, one {"type": "round", ...} per round, then one {"type": "summary", ...}.

    Example: tracetap cache claude:4f1c2a
    """
    from sqlalchemy.orm import Session as OrmSession

    from tracetap.tokens import report as prefix_report
    from tracetap.tokens.report import CAUSES, REASONS, fidelity_rows, miss_causes

    flt = make_filter(since, until, agent, model, project, session)
    if not target and not all_sessions and flt.is_empty():
        raise UserError("give a SESSION, --all or a filter (e.g. --since 7d) — see --help")
    url = db_url(db)
    with OrmSession(open_store(url)) as s:
        report = _find(s, prefix_report.cache, target, flt)
    if not report:
        raise no_match(flt, url)
    summary = prefix_report.fidelity_summary(report)
    if as_json:  # JSON lines: one object per round, then one summary object
        for row in fidelity_rows(report):
            typer.echo(json.dumps(row))
        typer.echo(json.dumps(summary))
        return
    if not summary["rounds"]:
        raise UserError(
            f"no round of {flt.describe() if target is None else target} has a known prefix "
            f"reuse ({summary['unmeasured_rounds']:,} round(s) were not tokenized)",
            NOTHING,
        )
    if target is None:
        title, cols, rows = _session_lines(report)
    elif all(r["measured_source"] == "prefix_tokens" for r in report[0]["rounds"]):
        title, cols, rows = _imported_lines(report[0])
    else:
        title, cols, rows = _round_lines(report[0])
    table, left_out = _fit(cols, rows)
    out.print(title)
    out.print(table)
    if left_out:
        out.print(f"left out at this width: {', '.join(left_out)} (wider terminal or --json)")
    if summary["prefix_hit_ratio"] is not None:
        out.print(
            f"prefix hit ratio (token-weighted): {summary['prefix_hit_ratio']:.1%} of "
            f"{summary['input_tokens_total']:,} input tokens in {summary['rounds']:,} round(s)"
        )
    if summary["unmeasured_rounds"]:
        out.print(f"rounds without known reuse (not listed): {summary['unmeasured_rounds']:,}")
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
