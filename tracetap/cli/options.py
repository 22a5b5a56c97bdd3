"""Option types the `tracetap` commands share, and `open_db`, which turns `--db` into an engine.

Declaring an option once keeps its flag, environment variable and help alike in every command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from tracetap.cli.errors import NOTHING, UserError, bad_url, remember_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from tracetap.pricing import PriceTable
    from tracetap.storage.filters import Filter

__all__ = [
    "Agent",
    "AsJson",
    "AsJsonLines",
    "Db",
    "Input",
    "Kind",
    "Model",
    "OutputFile",
    "Prices",
    "Project",
    "Session",
    "Since",
    "Until",
    "db_url",
    "make_filter",
    "no_recordings",
    "no_match",
    "open_db",
    "open_store",
    "Column",
    "fit_table",
    "price_table",
    "progress",
]

err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line

Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="TRACETAP_DB",
        metavar="URL",
        help="Database URL (default: the embedded SQLite store).",
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

# The shared filters of every read command (storage.filters.Filter); `make_filter` builds one.
_FILTERS = "Filters"
Since = Annotated[
    str | None,
    typer.Option(
        metavar="WHEN",
        help="Only rounds at or after this time: ISO date/time or an age (90m, 12h, 7d).",
        rich_help_panel=_FILTERS,
    ),
]
Until = Annotated[
    str | None,
    typer.Option(
        metavar="WHEN",
        help="Only rounds before this time: ISO date/time or an age (12h: 12 hours ago).",
        rich_help_panel=_FILTERS,
    ),
]
Agent = Annotated[
    list[str] | None,
    typer.Option(
        "--agent",
        metavar="AGENT",
        help="Only this agent: claude (Claude Code), codex or openai. Repeatable.",
        rich_help_panel=_FILTERS,
    ),
]
Model = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        metavar="MODEL",
        help="Only this model or model prefix. Repeatable.",
        rich_help_panel=_FILTERS,
    ),
]
Project = Annotated[
    list[str] | None,
    typer.Option(
        "--project",
        metavar="TEXT",
        help="Only projects (working directories) containing this text. Repeatable.",
        rich_help_panel=_FILTERS,
    ),
]
Session = Annotated[
    list[str] | None,
    typer.Option(
        "--session",
        metavar="ID",
        help="Only this session: its id, an id prefix or provider:id. Repeatable.",
        rich_help_panel=_FILTERS,
    ),
]
Prices = Annotated[
    Path | None,
    typer.Option(
        "--prices",
        envvar="TRACETAP_PRICES",
        metavar="FILE",
        help="A TOML price file whose models replace or extend the built-in prices.",
    ),
]
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


def no_recordings(url: str) -> UserError:
    """The one line every read command gives for a store that holds nothing yet (exit 1)."""
    from tracetap.storage.db import display_url

    return UserError(
        f"no recordings yet in {display_url(url)} — run `tracetap proxy` or `tracetap import`",
        NOTHING,
    )


def open_store(url: str, *, option: str = "--db") -> Engine:
    """An engine on the store at `url` for reading: nothing is created (no SQLite file, no
    folder, no schema). Raises UserError: for a URL tracetap cannot use, a SQLite file that does
    not exist, a store that cannot be opened or has a schema this tracetap does not know (exit
    2), and for a store with no tracetap schema yet (exit 1: nothing to show). `option` is
    the flag the URL came from, named in the message for a missing SQLite file.

    Example: engine = open_store("sqlite:///traces.db")
    """
    import sqlalchemy as sa

    from tracetap.storage.db import (
        SchemaError,
        check_schema,
        default_url,
        display_url,
        hide_passwords,
        make_engine,
    )

    remember_url(url)
    shown = display_url(url)  # the password never reaches the terminal
    try:
        engine = make_engine(url, create=False)
    except FileNotFoundError as exc:
        if url == default_url():  # a fresh install: nothing recorded yet
            raise no_recordings(url) from None
        raise UserError(
            f"{exc.filename}: no such SQLite store (nothing was created) — check {option}"
        ) from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError):
        raise bad_url(url) from None
    try:
        state = check_schema(engine)
    except SchemaError as exc:
        engine.dispose()
        raise UserError(hide_passwords(str(exc), url)) from None
    except Exception as exc:  # cannot connect
        engine.dispose()
        reason = hide_passwords(str(exc).splitlines()[0], url)
        raise UserError(f"cannot open {shown}: {reason}") from exc  # --debug shows the cause
    if state == "empty":
        engine.dispose()
        raise no_recordings(url)
    return engine


def open_db(db: str | None) -> Engine:
    """An engine on the `--db` store for reading (`open_store`): a missing, unreachable or
    schema-less store ends the command with one line, and nothing is created.

    Example: engine = open_db(db)
    """
    return open_store(db_url(db))


def make_filter(
    since: str | None = None,
    until: str | None = None,
    agent: list[str] | None = None,
    model: list[str] | None = None,
    project: list[str] | None = None,
    session: list[str] | None = None,
) -> Filter:
    """The shared filter options as a storage.filters.Filter; a bad value is a UserError naming
    the option (exit 2).

    Example: flt = make_filter(since, until, agent, model, project, session)
    """
    from tracetap.storage.filters import Filter, parse_when

    def when(option: str, text: str | None) -> float | None:
        if text is None:
            return None
        try:
            return parse_when(text)
        except ValueError as exc:
            raise UserError(f"{option}: {exc}") from None

    try:
        return Filter(
            since=when("--since", since),
            until=when("--until", until),
            agents=tuple(agent or ()),
            models=tuple(model or ()),
            projects=tuple(project or ()),
            sessions=tuple(session or ()),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


def no_match(flt: Filter, url: str) -> UserError:
    """The one line (exit 1) for a filter that matches nothing in the store at `url`."""
    from tracetap.storage.db import display_url

    return UserError(f"nothing in {display_url(url)} matches {flt.describe()}", NOTHING)


def price_table(path: Path | None) -> PriceTable:
    """The price table `--prices` (or TRACETAP_PRICES) extends; a bad file is one line naming
    it (exit 2).

    Example: table = price_table(prices); table.cost(model, usage)
    """
    from tracetap.pricing import PriceFileError, load_table

    try:
        return load_table(path)
    except PriceFileError as exc:
        raise UserError(str(exc)) from None


class _RateColumn(ProgressColumn):
    """Items per second, e.g. "1,250 rounds/s"."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else "", style="progress.data.speed")


def progress(what: str, unit: str = "rounds") -> Progress:
    """A rich progress bar on stderr for long work: `what`, a bar, %, done/total, the rate in
    `unit` per second and the time left. Disabled (prints nothing) when stderr is no terminal.

    Example: with progress("pushing") as bar: task = bar.add_task("push", total=n)
    """
    return Progress(
        TextColumn(what),
        BarColumn(bar_width=24),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


@dataclass(frozen=True)
class Column:
    """A table column for `fit_table`: a number is right-aligned and never wrapped; `drop`
    orders the columns left out when the terminal is too narrow (highest first; 0: kept)."""

    name: str
    number: bool = False
    drop: int = 0


def _needed(name: str, cells: Sequence[str]) -> int:
    from rich.cells import cell_len

    header = max((cell_len(word) for word in name.split()), default=0)
    return max([header, *(cell_len(c) for c in cells)]) + 3  # a space each side, a border


def fit_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int, **table: Any
) -> tuple[Table, list[str]]:
    """A rich Table of the columns whose cells fit `width` whole (no value cut or folded),
    leaving out droppable columns (highest `drop` first) until they do; and the names of the
    columns left out, for a line saying so. `table` goes to rich's Table (title, caption).

    Example: table, left_out = fit_table(cols, rows, out.width, title="3 sessions")
    """
    keep = list(range(len(columns)))
    need = {i: _needed(columns[i].name, [row[i] for row in rows]) for i in keep}
    while sum(need[i] for i in keep) + 1 > width:
        droppable = [i for i in keep if columns[i].drop]
        if not droppable:
            break
        keep.remove(max(droppable, key=lambda i: columns[i].drop))
    out = Table(**table)
    for i in keep:
        c = columns[i]
        out.add_column(
            c.name, justify="right" if c.number else "left", no_wrap=c.number, overflow="fold"
        )
    for row in rows:
        out.add_row(*(row[i] for i in keep))
    return out, [columns[i].name for i in range(len(columns)) if i not in keep]
