"""`tracetap import SOURCE`: backfill the store from Claude Code / Codex local history or a
TraceLab JSONL file; thin wrappers over `tracetap.importers.<source>`.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from tracetap.cli.errors import NOTHING, UserError
from tracetap.cli.options import Db, db_url
from tracetap.cli.transfer import Meter, err, read_file

if TYPE_CHECKING:
    from tracetap.importers.logrows import Unreadable
    from tracetap.importers.sniff import Looks
    from tracetap.importers.tracelab import Loaded

__all__ = ["import_app", "register"]

import_app = typer.Typer(
    help="Import past sessions (agent logs, TraceLab files) into the store.", no_args_is_help=True
)


class _LogRows(Protocol):
    """What importers.claude_code.rows_from_dir and importers.codex.rows_from_dir look like."""

    def __call__(
        self,
        root: Path | None = ...,
        *,
        unreadable: Unreadable | None = ...,
        on_file: Callable[[Path], None] | None = ...,
    ) -> Iterator[dict[str, Any]]: ...


def _first(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]] | None:
    """`rows` unchanged, or None when there are none (then the store is not touched)."""
    first = next(rows, None)
    return None if first is None else chain([first], rows)


def _load(
    url: str, rows: Iterator[dict[str, Any]], source: str, progress: Callable[[int], None] | None
) -> Loaded:
    from tracetap.importers.tracelab import load_rows

    return load_rows(url, rows, source=source, progress=progress)


def _imported(loaded: Loaded, label: str, unreadable: Unreadable | None = None) -> None:
    line = f"imported {loaded.stored:,} new rounds from {label}"
    if loaded.rows > loaded.stored:
        line += f" ({loaded.rows - loaded.stored:,} already in the store)"
    if unreadable is not None and unreadable.count:
        line += f"; {unreadable.describe()}"
    err.print(line)


def _wrong_input(path: Path, expected: Looks) -> UserError | None:
    """A UserError naming what `path` holds and the command for it, when that is not
    `expected`."""
    from tracetap.importers.sniff import describe, looks_like

    looks = looks_like(path)
    if looks is None or looks == expected:
        return None
    return UserError(describe(path, looks))


def _log_dir(directory: Path | None, default: Path, what: str) -> Path:
    root = directory or default
    if not root.exists():
        raise UserError(f"{root} does not exist (no {what} history there) — give its directory")
    return root


def _import_logs(
    db: str | None, root: Path, rows_from_dir: _LogRows, expected: Looks, what: str
) -> None:
    """Import every log under `root`: a bar in bytes of the logs read, lines that are no JSON
    counted, and no importable record (or another kind of input) is an error."""
    from tracetap.importers.logrows import Unreadable, iter_log_files

    files = iter_log_files(root)
    sizes = {p: p.stat().st_size for p in files}
    unreadable = Unreadable()
    with Meter(str(root), sum(sizes.values()), unit="bytes") as meter:
        rows = _first(
            rows_from_dir(root, unreadable=unreadable, on_file=lambda p: meter.read(sizes[p]))
        )
        loaded = None if rows is None else _load(db_url(db), rows, f"log:{expected}", meter.rows)
    if loaded is None:
        wrong = _wrong_input(root, expected)
        if wrong is not None:
            raise wrong
        skipped = f"; {unreadable.describe()}" if unreadable.count else ""
        where = f"{len(files):,} .jsonl files read" if root.is_dir() else "read whole"
        raise UserError(f"no {what} rounds in {root} ({where}){skipped}", NOTHING)
    _imported(loaded, str(root), unreadable)


@import_app.command("claude-code")
def import_claude_code(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Claude Code projects directory "
            "or one session .jsonl (default: "
            "~/.claude/projects)."
        ),
    ] = None,
    db: Db = None,
) -> None:
    """Import Claude Code sessions from its local history (rounds marked as from logs).

    Example: tracetap import claude-code ~/.claude/projects
    """
    from tracetap.importers import claude_code

    root = _log_dir(directory, claude_code.default_dir(), "Claude Code")
    _import_logs(db, root, claude_code.rows_from_dir, "claude-code", "Claude Code")


@import_app.command("codex")
def import_codex(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Codex sessions directory or one rollout .jsonl (default: ~/.codex/sessions)."
        ),
    ] = None,
    db: Db = None,
) -> None:
    """Import Codex sessions from its rollout files (rounds marked as from logs).

    Example: tracetap import codex ~/.codex/sessions
    """
    from tracetap.importers import codex

    root = _log_dir(directory, codex.default_dir(), "Codex")
    _import_logs(db, root, codex.rows_from_dir, "codex", "Codex")


@import_app.command("tracelab")
def import_tracelab(
    path: Annotated[Path, typer.Argument(help="TraceLab rows (.jsonl or .jsonl.gz).")],
    db: Db = None,
) -> None:
    """Load TraceLab-format rows into the store; rows already there are skipped.

    Example: tracetap import tracelab sessions.jsonl.gz
    """
    from tracetap.tracelab import TraceLabFormatError

    if path.is_dir():
        wrong = _wrong_input(path, "tracelab")
        hint = f"; {wrong.message}" if wrong is not None else ""
        raise UserError(
            f"{path} is a directory — `tracetap import tracelab` reads one .jsonl or "
            f".jsonl.gz file{hint}"
        )
    if not path.is_file():
        raise UserError(f"{path} does not exist — give a TraceLab .jsonl or .jsonl.gz file")
    try:
        with Meter(str(path), path.stat().st_size, unit="bytes") as meter:
            rows = _first(read_file(path, meter))
            loaded = None if rows is None else _load(db_url(db), rows, "tracelab", None)
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise UserError(f"{path}: a corrupt or cut-short gzip file ({exc})") from None
    except TraceLabFormatError as exc:
        raise _wrong_input(path, "tracelab") or UserError(str(exc)) from None
    if loaded is None:
        raise UserError(f"no TraceLab rows in {path}: the file is empty", NOTHING)
    _imported(loaded, str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
