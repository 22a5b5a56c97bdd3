"""`tracetap import SOURCE`: backfill the store from Claude Code / Codex local history or a
TraceLab JSONL file; thin wrappers over `tracetap.importers.<source>.import_<source>`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tracetap.cli.options import Db, db_url

__all__ = ["import_app", "register"]

err = Console(stderr=True, soft_wrap=True)
import_app = typer.Typer(
    help="Import past sessions (agent logs, TraceLab files) into the store.", no_args_is_help=True
)


class _Importer(Protocol):
    """What importers.claude_code.import_claude_code and its siblings look like."""

    def __call__(
        self, db_url: str, path: Path, /, *, progress: Callable[[int], None] | None = ...
    ) -> int: ...


def _load(db: str | None, importer: _Importer, path: Path) -> None:
    """Run `importer` on `path` with a progress line on a terminal; a bad row exits 1."""
    from tracetap.tracelab import TraceLabFormatError

    url, label = db_url(db), str(path)
    try:
        if err.is_terminal:
            with Progress(
                TextColumn(label),
                BarColumn(),
                TextColumn("{task.completed:,} rows"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as bar:
                task = bar.add_task(label, total=None)

                def advance(n: int) -> None:
                    bar.advance(task, n)

                stored = importer(url, path, progress=advance)
        else:
            stored = importer(url, path)
    except (TraceLabFormatError, ValueError) as exc:
        from tracetap.storage.db import hide_passwords

        err.print(f"[red]error:[/red] {hide_passwords(str(exc), url)}")
        raise typer.Exit(1) from None
    err.print(f"imported {stored:,} new rounds from {label}")


def _log_dir(directory: Path | None, default: Path, what: str) -> Path:
    root = directory or default
    if not root.exists():
        raise typer.BadParameter(f"{root} does not exist (no {what} history there)")
    return root


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
    _load(db, claude_code.import_claude_code, root)


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
    _load(db, codex.import_codex, root)


@import_app.command("tracelab")
def import_tracelab(
    path: Annotated[Path, typer.Argument(help="TraceLab rows (.jsonl or .jsonl.gz).")],
    db: Db = None,
) -> None:
    """Load TraceLab-format rows into the store.

    Example: tracetap import tracelab sessions.jsonl.gz
    """
    from tracetap.importers import tracelab

    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist")
    _load(db, tracelab.import_tracelab, path)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
