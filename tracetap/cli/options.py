"""Option types the `tracetap` commands share, and `open_db`, which turns `--db` into an engine.

Declaring an option once keeps its flag, environment variable and help alike in every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "AsJson",
    "AsJsonLines",
    "Db",
    "Input",
    "Kind",
    "OutputFile",
    "Provider",
    "SessionFilter",
    "Since",
    "Until",
    "db_url",
    "open_db",
]

err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line

Db = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="TRACETAP_DB", help="Database URL (default: the embedded SQLite store)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]
AsJsonLines = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")]
OutputFile = Annotated[
    Path | None, typer.Option("-o", "--output", help="Output file (default: stdout).")
]

# Which rounds an export reads: from the store or a TraceLab file, filtered alike.
Input = Annotated[
    Path | None,
    typer.Option("--input", "-i", help="Read TraceLab JSONL (.gz) rows instead of a database."),
]
Since = Annotated[str | None, typer.Option(help="Only rounds at or after this ISO time.")]
Until = Annotated[str | None, typer.Option(help="Only rounds before this ISO time.")]
Provider = Annotated[str | None, typer.Option(help="Only claude, codex or openai.")]
SessionFilter = Annotated[str | None, typer.Option(help="Only this session (id or provider:id).")]
Kind = Annotated[
    str,
    typer.Option(
        help="main: main-agent rounds; agent: with subagents "
        "and compactions; all: also side requests."
    ),
]


def db_url(db: str | None) -> str:
    """The URL `--db` names, else TRACETAP_DB, else the embedded SQLite store's.

    Example: db_url(None) -> "sqlite:///…/tracetap/tracetap.db"
    """
    from tracetap.storage.db import default_url

    return db or default_url()


def open_db(db: str | None) -> Engine:
    """An engine on the `--db` store; a schema too old or a store that cannot be opened ends the
    command with exit code 2 and one line saying why (an empty store only gets a warning).

    Example: engine = open_db(db)
    """
    from tracetap.storage.db import (
        SchemaError,
        check_schema,
        display_url,
        hide_passwords,
        make_engine,
    )

    url = db_url(db)
    shown = display_url(url)  # the password never reaches the terminal
    engine = make_engine(url)
    try:
        if check_schema(engine) == "empty":
            err.print(f"[yellow]{shown} holds no tracetap data yet[/yellow]")
    except SchemaError as exc:
        err.print(f"[red]error:[/red] {hide_passwords(str(exc), url)}")
        raise typer.Exit(2) from None
    except Exception as exc:  # cannot connect
        reason = hide_passwords(str(exc).splitlines()[0], url)
        err.print(f"[red]error:[/red] cannot open {shown}: {reason}")
        raise typer.Exit(2) from None
    return engine
