"""`tracetap sessions`, `show SESSION`, `push` and `db upgrade|check|quarantine`: read and manage
the store. Thin wrappers over storage.queries, .push, .db and .quarantine; errors become one line.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tracetap.cli.errors import UserError, bad_url, remember_url
from tracetap.cli.options import AsJson, AsJsonLines, Db, Provider, db_url, open_db, open_store

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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
    return "-" if a is None or b is None else f"{(b - a) * 1000:.0f}"


def sessions(
    db: Db = None,
    provider: Provider = None,
    limit: Annotated[int, typer.Option(help="Newest N sessions (0: all).")] = 50,
    as_json: AsJsonLines = False,
) -> None:
    """List recorded sessions: agent, session, rounds, tool calls, tokens, time span.

    Example: tracetap sessions --provider claude
    """
    from sqlalchemy.orm import Session

    from tracetap.storage import queries
    from tracetap.storage.queries import summary_dict

    with Session(open_db(db)) as s:
        rows = queries.sessions(s, provider=provider, limit=limit)
    if as_json:
        for r in rows:
            out.print_json(json.dumps(summary_dict(r)))
        return
    table = Table(title=f"{len(rows)} session(s)")
    for col in (
        "agent",
        "session",
        "rounds",
        "tool calls",
        "input tok",
        "cached tok",
        "output tok",
        "started (UTC)",
        "span",
    ):
        table.add_column(
            col, justify="right" if "tok" in col or col in ("rounds", "tool calls") else "left"
        )
    for r in rows:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(r.by_kind.items()) if k != "main")
        table.add_row(
            r.provider,
            r.agent_session_id,
            f"{r.rounds}" + (f" ({kinds})" if kinds else ""),
            str(r.tool_calls),
            f"{r.input_tokens:,}",
            f"{r.cached_tokens:,}",
            f"{r.output_tokens:,}",
            _ts(r.first_at),
            _dur(r.first_at, r.last_at),
        )
    out.print(table)


def show(
    session: Annotated[str, typer.Argument(help="Session id, provider:id, or a unique prefix.")],
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """Show one session round by round: kind, model, tokens, timing, tool calls.

    Example: tracetap show claude:4f1c2a
    """
    from sqlalchemy.orm import Session

    from tracetap.storage import queries
    from tracetap.tokens.report import round_prefix_info

    with Session(open_db(db)) as s:
        try:
            view = queries.show(s, session)
        except LookupError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        prefix = round_prefix_info(s, [d.round.id for d in view.rounds])
    if as_json:
        out.print_json(json.dumps(view.as_dict(prefix)))
        return
    details = view.rounds
    table = Table(title=f"{view.name}  ({len(details)} rounds)")
    for col in (
        "#",
        "kind",
        "model",
        "status",
        "input",
        "cached",
        "measured",
        "output",
        "ttfb ms",
        "ttft ms",
        "total ms",
        "tools (latency)",
        "miss cause",
    ):
        table.add_column(
            col,
            justify="right"
            if col
            in ("#", "input", "cached", "measured", "output", "ttfb ms", "ttft ms", "total ms")
            else "left",
        )
    for i, d in enumerate(details):
        r = d.round
        tools = ", ".join(
            f"{t.name}({_dur(t.emitted_at, d.results.get(t.call_id))})" for t in d.tools
        )
        status = str(r.status or "-") + ("" if r.complete else f" {r.error_type or 'incomplete'}")
        info = prefix.get(r.id) or {}
        measured = info.get("measured_prefix_tokens")
        table.add_row(
            str(i),
            r.kind,
            r.model or "-",
            status,
            f"{r.input_tokens_total or 0:,}",
            f"{r.cached_tokens or 0:,}",
            "-" if measured is None else f"{measured:,}",
            f"{r.output_tokens or 0:,}",
            _ms(r.request_at, r.upstream_first_byte_at),
            _ms(r.request_at, r.first_token_at),
            _ms(r.request_at, r.end_at),
            tools,
            info.get("cause") or "",
        )
    out.print(table)


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
    """Exit 0 when the schema is current, 2 (with what to run) otherwise.

    Example: tracetap db check --db sqlite:///traces.db
    """
    import sqlalchemy as sa

    from tracetap.storage.db import (
        SchemaError,
        check_schema,
        display_url,
        hide_passwords,
        make_engine,
    )

    url = db_url(db)
    shown = display_url(url)  # the password never reaches the terminal
    try:
        engine = make_engine(url, create=False)  # a check creates nothing
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename}: no such SQLite store (nothing was created)") from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError):
        raise bad_url(url) from None
    try:
        state = check_schema(engine)
    except SchemaError as exc:
        err.print(f"[red]error:[/red] {hide_passwords(str(exc), url)}")
        raise typer.Exit(2) from None
    except Exception as exc:  # cannot connect
        reason = hide_passwords(str(exc).splitlines()[0], url)
        err.print(f"[red]error:[/red] cannot open {shown}: {reason}")
        raise typer.Exit(2) from None
    if state == "empty":
        err.print(f"{shown} is empty: run `tracetap db upgrade --db {shown}`")
        raise typer.Exit(2)
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
        str, typer.Option("--from", help="Store to read (e.g. the local sqlite:///… file).")
    ],
    target: Annotated[
        str, typer.Option("--to", help="Store to write (e.g. the team's postgresql://… database).")
    ],
) -> None:
    """Copy your recorded (already scrubbed) rounds into another store; running it twice adds
    nothing.

    Example: tracetap push --from sqlite:///traces.db --to postgresql://team@db/tracetap
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tracetap.storage.db import SchemaError, hide_passwords
    from tracetap.storage.push import push as do_push

    src = open_store(source)  # read only: a missing --from store is not created
    dst = _writer(target)
    try:
        with Progress(
            TextColumn("pushing"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as bar:
            task = bar.add_task("push", total=None)
            result = do_push(
                src, dst, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except (SchemaError, ValueError) as exc:
        err.print(f"[red]error:[/red] {hide_passwords(str(exc), source, target)}")
        raise typer.Exit(2) from None
    except Exception as exc:  # cannot connect, permissions ...
        reason = hide_passwords(str(exc).splitlines()[0], source, target)
        err.print(f"[red]error:[/red] push failed: {reason}")
        raise typer.Exit(2) from None
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
