"""`tracetap sessions`, `show SESSION`, `push` and `db upgrade|check|quarantine`: read and manage
the store, with costs. Thin wrappers over storage.queries, .push, .db and .quarantine.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracetap.cli.errors import MISTAKE, NOTHING, UserError, bad_url, remember_url
from tracetap.cli.options import (
    Agent,
    AsJsonLines,
    Column,
    Db,
    Model,
    Prices,
    Project,
    Session,
    Since,
    Until,
    db_url,
    fit_table,
    make_filter,
    no_match,
    no_recordings,
    open_db,
    open_store,
    price_table,
    progress,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session as OrmSession

    from tracetap.pricing import CostTotal, PriceTable
    from tracetap.storage.queries import ContentPart, RoundContent, SessionView

__all__ = ["register"]

# Piped output is not cut to 80 columns: session ids must stay whole.
out = Console(width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line


def _writer(url: str) -> Engine:
    """An engine on a store to write (created when it is a new SQLite file); a URL tracetap
    cannot open is one line."""
    import sqlalchemy as sa

    from tracetap.storage.db import make_engine

    remember_url(url)
    try:
        return make_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError):
        raise bad_url(url) from None


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _dur(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    s = max(0.0, b - a)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def _ms(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{(b - a) * 1000:,.0f}"


def _usd(value: float | None) -> str:
    """Dollars for a table: "–" for no price (never a wrong $0)."""
    if value is None:
        return "–"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def _cost(total: CostTotal) -> str:
    """A group's cost; "+" when some of its rounds have no price (the sum is a lower bound)."""
    if not total.priced:
        return "–"
    return _usd(total.usd) + ("+" if total.unpriced else "")


def _prices_note(table: PriceTable) -> str:
    dates = sorted({info.get("taken", "?") for info in table.sources.values()})
    return f"cost: USD at list prices of {', '.join(dates)} (–: no price; +: some rounds unpriced)"


def _notes(notes: list[str]) -> None:
    """The lines under a table: whose prices, what was shortened or left out."""
    for note in notes:
        out.print(Text(note, style="dim"))


def _kinds(by_kind: dict[str, int]) -> str:
    """The rounds that are not the main agent's, e.g. "subagent 3, compaction 1"."""
    return ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()) if k != "main")


def _short_ids(ids: list[str]) -> list[str]:
    """The shortest prefixes (8 characters or more) that still tell `ids` apart."""
    n = 8
    while n < max(map(len, ids)) and len({i[:n] for i in ids}) < len(set(ids)):
        n += 4
    return [i[:n] for i in ids]


def _project(project: str | None) -> str:
    """A project for a table: its last two path parts."""
    if not project:
        return "-"
    parts = project.rstrip("/").split("/")
    return project if len(parts) <= 2 else "…/" + "/".join(parts[-2:])


def sessions(
    db: Db = None,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    limit: Annotated[int, typer.Option(help="Newest N sessions (0: all).")] = 50,
    as_json: AsJsonLines = False,
    prices: Prices = None,
) -> None:
    """List recorded sessions: agent, session, project, rounds, tool calls, tokens, cost, time.

    Example: tracetap sessions --since 7d --agent claude --project myrepo
    """
    from sqlalchemy.orm import Session as OrmSession

    from tracetap.storage import queries
    from tracetap.storage.queries import summary_dict

    flt = make_filter(since, until, agent, model, project, session)
    table_of_prices = price_table(prices)
    url = db_url(db)
    with OrmSession(open_db(db)) as s:
        total = queries.count_sessions(s, flt=flt)
        rows = queries.sessions(s, flt=flt, limit=limit, prices=table_of_prices)
    if total == 0:
        raise no_recordings(url) if flt.is_empty() else no_match(flt, url)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(summary_dict(r), separators=(",", ":")))
        return
    shown = f"showing {len(rows):,} of {total:,} sessions" if len(rows) < total else None
    title = shown or f"{total:,} session{'s' if total != 1 else ''}"
    if not flt.is_empty():
        title += f" ({flt.describe()})"
    columns = [
        Column("agent"),
        Column("session"),
        Column("project", drop=4),
        Column("rounds", number=True),
        Column("tools", number=True, drop=8),
        Column("input", number=True, drop=7),
        Column("cached", number=True, drop=9),
        Column("output", number=True, drop=5),
        Column("cost", number=True),
        Column("started (UTC)"),
        Column("span", drop=6),
    ]
    ids = [r.agent_session_id for r in rows]
    cells = [
        [
            r.provider,
            sid,
            _project(r.project),
            f"{r.rounds}" + (f" ({kinds})" if (kinds := _kinds(r.by_kind)) else ""),
            str(r.tool_calls),
            f"{r.input_tokens:,}",
            f"{r.cached_tokens:,}",
            f"{r.output_tokens:,}",
            _cost(r.cost),
            _ts(r.first_at)[:16],
            _dur(r.first_at, r.last_at),
        ]
        for r, sid in zip(rows, ids)
    ]
    notes = [_prices_note(table_of_prices)]
    table, left_out = fit_table(columns, cells, out.width)
    if left_out and ids:  # a narrow terminal: unique id prefixes (`show` takes them) first
        for row, short in zip(cells, _short_ids(ids)):
            row[1] = short
        notes.append("session ids shortened (show takes a prefix)")
        table, left_out = fit_table(columns, cells, out.width)
    if left_out:
        notes.append(f"left out at this width: {', '.join(left_out)} (see --json)")
    table.title = title
    out.print(table)
    _notes(notes)


def _find(s: OrmSession, ref: str, table: PriceTable) -> SessionView:
    """The session `ref` names, or one line: none matches (exit 1), several do (exit 2)."""
    from tracetap.storage import queries

    try:
        return queries.show(s, ref, prices=table)
    except queries.AmbiguousSession as exc:
        raise UserError(str(exc), MISTAKE) from None
    except LookupError as exc:
        raise UserError(str(exc), NOTHING) from None


# Longest text shown for one part in a whole session's content; --round N shows all of it.
_CLIP = 2_000


def _label(p: ContentPart) -> str:
    if p.kind == "tool_call":
        label = f"tool call {p.name or ''}".rstrip()
    elif p.kind == "tool_result":
        label = "tool result"
    elif p.kind == "thinking":
        label = f"{p.role} thinking"
    else:
        label = p.role
    return label + (f" [{p.call_id}]" if p.call_id else "")


def _print_parts(title: str, parts: list[ContentPart], clip: int | None) -> None:
    if not parts:
        return
    out.print(Text(title, style="bold"))
    for p in parts:
        text = p.text
        if clip is not None and len(text) > clip:
            text = text[:clip] + f" … ({len(text) - clip:,} more characters; see --round)"
        out.print(Text(f"  {_label(p)}: ", style="cyan").append(Text(text, style="default")))


def _print_content(content: RoundContent, clip: int | None) -> None:
    if content.note:
        out.print(Text(f"  ({content.note})", style="yellow"))
    # the assistant's turns a client re-sends are the previous responses, shown there
    sent = [p for p in content.new if p.role != "assistant"]
    resent = len(content.new) - len(sent)
    title = "new input" + (f" (and {resent} re-sent assistant part(s))" if resent else "")
    _print_parts(title, sent, clip)
    _print_parts("response", content.response, clip)


def _tool_results(s: OrmSession, view: SessionView, index: int) -> dict[str, ContentPart]:
    """The results of round `index`'s tool calls, from the rounds after it that sent them."""
    from tracetap.storage.queries import round_content

    wanted = {t.call_id for t in view.rounds[index].tools}
    found: dict[str, ContentPart] = {}
    for d in view.rounds[index + 1 : index + 6]:
        if not wanted - set(found):
            break
        for p in round_content(s, d.round).new:
            if p.kind == "tool_result" and p.call_id in wanted:
                found.setdefault(p.call_id, p)
    return found


def _print_round(s: OrmSession, view: SessionView, index: int, prefix: dict[int, Any]) -> None:
    """One round in full: timings, usage, cost, tool calls and their results, its content."""
    from tracetap.storage.queries import round_content

    d = view.rounds[index]
    r = d.round
    info = view.round_dict(index, prefix)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="cyan")
    grid.add_column()

    def line(name: str, value: Any) -> None:
        if value is not None:
            grid.add_row(name, str(value))

    line("round", f"{index} of {len(view.rounds)} in {view.name}")
    line("kind / model", f"{r.kind} / {r.model or '-'}")
    line(
        "status", str(r.status or "-") + ("" if r.complete else f" {r.error_type or 'incomplete'}")
    )
    line("request (UTC)", _ts(r.request_at))
    line(
        "ttfb / ttft / total",
        " / ".join(
            f"{v:,.0f} ms" if v is not None else "-"
            for v in (info["upstream_ttfb_ms"], info["ttft_ms"], info["end_ms"])
        ),
    )
    line("input tokens", f"{r.input_tokens_total or 0:,}")
    for name, value in (
        ("  uncached", r.uncached_input_tokens),
        (
            "  cache read",
            r.cache_read_input_tokens if r.cache_read_input_tokens is not None else r.cached_tokens,
        ),
        ("  cache write 5m", r.cache_creation_5m_tokens),
        ("  cache write 1h", r.cache_creation_1h_tokens),
    ):
        if value:
            line(name, f"{value:,}")
    line(
        "output tokens",
        f"{r.output_tokens or 0:,}"
        + (f" ({r.reasoning_tokens:,} reasoning)" if r.reasoning_tokens else ""),
    )
    measured = (info["prefix"] or {}).get("measured_prefix_tokens")
    line("measured prefix", None if measured is None else f"{measured:,}")
    line("cost", _usd(d.cost))
    line("content level", r.content_policy)
    for t in d.tools:
        line("tool call", f"{t.name} [{t.call_id}] {_dur(t.emitted_at, d.results.get(t.call_id))}")
    out.print(grid)
    content = round_content(s, r)
    _print_content(content, None)
    results = _tool_results(s, view, index)
    _print_parts("tool results (sent by the next rounds)", list(results.values()), None)


def show(
    session: Annotated[str, typer.Argument(help="Session id, provider:id, or a unique prefix.")],
    db: Db = None,
    content: Annotated[
        bool,
        typer.Option(
            "--content",
            help="Also each round's new messages, response and tool input at the stored "
            "content level.",
        ),
    ] = False,
    round_: Annotated[
        int | None,
        typer.Option(
            "--round", metavar="N", help="Only round N (the # column), in full with its content."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object on one line instead of a table.")
    ] = False,
    prices: Prices = None,
) -> None:
    """Show one session round by round: kind, model, tokens, timing, cost, tool calls.

    Example: tracetap show claude:4f1c2a --round 3
    """
    from sqlalchemy.orm import Session as OrmSession

    from tracetap.storage.queries import round_content
    from tracetap.tokens.report import round_prefix_info

    table_of_prices = price_table(prices)
    with OrmSession(open_db(db)) as s:
        view = _find(s, session, table_of_prices)
        if round_ is not None and not 0 <= round_ < len(view.rounds):
            raise UserError(f"--round {round_}: {view.name} has rounds 0 to {len(view.rounds) - 1}")
        prefix = round_prefix_info(s, [d.round.id for d in view.rounds])
        if round_ is not None:
            if as_json:
                data = view.round_dict(round_, prefix)
                data["content"] = round_content(s, view.rounds[round_].round).as_dict()
                typer.echo(json.dumps(data, separators=(",", ":")))
            else:
                _print_round(s, view, round_, prefix)
            return
        if as_json:
            data = view.as_dict(prefix)
            if content:
                for d, r in zip(view.rounds, data["rounds"]):
                    r["content"] = round_content(s, d.round).as_dict()
            typer.echo(json.dumps(data, separators=(",", ":")))
            return
        _print_table(view, prefix, table_of_prices)
        if content:
            for i, d in enumerate(view.rounds):
                r = d.round
                out.rule(f"round {i} · {r.kind} · {r.model or '-'} · {_usd(d.cost)}", align="left")
                _print_content(round_content(s, r), _CLIP)


def _print_table(view: SessionView, prefix: dict[int, Any], table_of_prices: PriceTable) -> None:
    details = view.rounds
    total = view.cost
    title = f"{view.name}  ({len(details)} rounds, {_cost(total)})"
    if view.session.project:
        title += f"  {view.session.project}"
    columns = [
        Column("#", number=True),
        Column("kind", drop=5),
        Column("model"),
        Column("status", drop=6),
        Column("input", number=True),
        Column("cached", number=True, drop=4),
        Column("measured", number=True, drop=9),
        Column("output", number=True),
        Column("cost", number=True),
        Column("ttfb ms", number=True, drop=10),
        Column("ttft ms", number=True, drop=7),
        Column("total ms", number=True, drop=3),
        Column("tools (latency)", drop=8),
        Column("miss cause", drop=11),
    ]
    cells = []
    for i, d in enumerate(details):
        r = d.round
        tools = ", ".join(
            f"{t.name}({_dur(t.emitted_at, d.results.get(t.call_id))})" for t in d.tools
        )
        status = str(r.status or "-") + ("" if r.complete else f" {r.error_type or 'incomplete'}")
        info = prefix.get(r.id) or {}
        measured = info.get("measured_prefix_tokens")
        cells.append(
            [
                str(i),
                r.kind,
                r.model or "-",
                status,
                f"{r.input_tokens_total or 0:,}",
                f"{r.cached_tokens or 0:,}",
                "-" if measured is None else f"{measured:,}",
                f"{r.output_tokens or 0:,}",
                _usd(d.cost),
                _ms(r.request_at, r.upstream_first_byte_at),
                _ms(r.request_at, r.first_token_at),
                _ms(r.request_at, r.end_at),
                tools,
                info.get("cause") or "",
            ]
        )
    table, left_out = fit_table(columns, cells, out.width, title=title)
    notes = [_prices_note(table_of_prices)]
    if left_out:
        notes.append(f"left out at this width: {', '.join(left_out)} (see --round N or --json)")
    out.print(table)
    _notes(notes)


db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(db: Db = None) -> None:
    """Create or migrate the database schema to this version of tracetap.

    Example: tracetap db upgrade --db postgresql://tracetap@db/tracetap
    """
    from tracetap.storage.db import current_revision, display_url, hide_passwords, upgrade

    url = db_url(db)
    engine = _writer(url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    except Exception as exc:
        reason = hide_passwords(str(exc).splitlines()[0], url)
        err.print(f"[red]error:[/red] migration failed on {display_url(url)}: {reason}")
        raise typer.Exit(2) from None
    err.print(f"{display_url(url)}: {before or 'empty'} -> {after}")


@db_app.command("check")
def db_check(db: Db = None) -> None:
    """Exit 0 when the schema is current; else one line saying what to run (exit 1 for a
    store with no recordings yet, 2 for a schema to upgrade or a store that cannot be opened).

    Example: tracetap db check --db sqlite:///traces.db
    """
    from tracetap.storage.db import display_url, sqlite_path

    url = db_url(db)
    shown = display_url(url)  # the password never reaches the terminal
    try:
        path = sqlite_path(url)
    except Exception:  # not a URL: open_store says so
        path = None
    if path is not None and not path.is_file():
        raise UserError(
            f"{path}: no such SQLite store (nothing was created) "
            f"— to create it: tracetap db upgrade --db {shown}"
        )
    open_store(url)  # a check creates nothing
    err.print(f"{shown}: schema is current")


@db_app.command("quarantine")
def db_quarantine(
    db: Db = None,
    retry: Annotated[
        bool, typer.Option("--retry", help="Store them again with this tracetap's writer.")
    ] = False,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="Also list records resolved by a retry.")
    ] = False,
    as_json: AsJsonLines = False,
) -> None:
    """List the records the writer quarantined because the database could not store them: uid,
    kind, error, when. --retry writes each again; those stored now are marked resolved.

    Example: tracetap db quarantine --retry --db sqlite:///traces.db
    """
    from tracetap.storage.db import hide_passwords
    from tracetap.storage.quarantine import quarantine, retry_quarantine
    from tracetap.tokens.store import TokenStore

    engine = open_db(db)
    if retry:
        try:
            result = retry_quarantine(engine, [TokenStore()])
        except Exception as exc:  # the database went away meanwhile
            reason = hide_passwords(str(exc).splitlines()[0], db_url(db))
            err.print(f"[red]error:[/red] retry failed: {reason}")
            raise typer.Exit(2) from None
        err.print(
            f"{len(result.resolved):,} stored and resolved, "
            f"{len(result.failed):,} still quarantined"
        )
    entries = quarantine(engine, resolved=resolved)
    if as_json:
        for q in entries:
            typer.echo(json.dumps(q.as_dict()))
        return
    table = Table(title=f"{len(entries)} quarantined record(s)")
    for col in ("id", "uid", "kind", "error", "quarantined (UTC)", "retried (UTC)"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for q in entries:
        table.add_row(
            str(q.id),
            q.uid or "-",
            q.kind + ("" if q.kept else " (not kept)") + (" resolved" if q.resolved else ""),
            q.error,
            _ts(q.created_at),
            _ts(q.retried_at),
        )
    out.print(table)


def push(
    source: Annotated[
        str,
        typer.Option(
            "--from", metavar="URL", help="Store to read (e.g. your local sqlite:///PATH)."
        ),
    ],
    target: Annotated[
        str,
        typer.Option(
            "--to", metavar="URL", help="Store to write (e.g. the team's postgresql://HOST/DB)."
        ),
    ],
) -> None:
    """Copy your recorded (already scrubbed) rounds into another store; running it twice adds
    nothing.

    Example: tracetap push --from sqlite:///traces.db --to postgresql://team@db/tracetap
    """
    from tracetap.storage.db import SchemaError, hide_passwords
    from tracetap.storage.push import push as do_push

    src = open_store(source, option="--from")  # read only: a missing store is not created
    dst = _writer(target)
    try:
        with progress("pushing") as bar:
            task = bar.add_task("push", total=None)
            result = do_push(
                src, dst, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except (SchemaError, ValueError) as exc:
        raise UserError(hide_passwords(str(exc), source, target)) from exc
    except Exception as exc:  # cannot connect, permissions ... (--debug shows the cause)
        reason = hide_passwords(str(exc).splitlines()[0], source, target)
        raise UserError(f"push failed: {reason}") from exc
    err.print(
        f"pushed {result.rounds:,} new rounds ({result.skipped:,} already there), "
        f"{result.side_requests:,} side requests, {result.blobs:,} content blobs, "
        f"{result.sessions:,} sessions"
    )


def register(app: typer.Typer) -> None:
    app.command("sessions")(sessions)
    app.command("show")(show)
    app.command("push")(push)
    app.add_typer(db_app, name="db")
