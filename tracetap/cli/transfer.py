"""What `tracetap export` and `tracetap import` share: a progress bar on a terminal (rows or bytes
with %, rate and ETA on stderr), TraceLab files read with byte progress, outputs written whole.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from tracetap.cli.errors import UserError
from tracetap.tracelab import TraceLabFormatError, check_row

__all__ = ["Meter", "err", "read_file", "staged"]

err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line

# The fields every TraceLab row has (tracelab.check_row checks them and more on a file's first row).
_REQUIRED = frozenset(
    ("provider", "session_id", "round_id", "input_tokens_total", "prefix_tokens", "timing_events")
)
_FLUSH_ROWS = 500  # rows between progress updates: a bar costs little per row this way


class _RowRate(ProgressColumn):
    """Rows per second so far, also when the bar itself counts bytes."""

    def render(self, task: Task) -> Text:
        rows = task.fields.get("rows", task.completed)
        elapsed = task.elapsed or 0.0
        rate = f"{rows / elapsed:,.0f}" if elapsed > 0 else "–"
        return Text(f"{rate} rows/s", style="progress.data.speed")


class Meter:
    """Progress of long work: rows done out of a known count, or bytes read out of a file's
    size (with the rows so far beside them). Shown as a rich bar on `console` only when it is a
    terminal; otherwise nothing is printed and the calls cost next to nothing.

    Example: with Meter("export", total=n) as meter: ... meter.rows(1) ...
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: Literal["rows", "bytes"] = "rows",
        console: Console | None = None,
    ) -> None:
        self.console = console or err
        self.unit = unit
        self.total = total
        self.done_rows = 0
        self._pending = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if not self.console.is_terminal:
            return
        amount: ProgressColumn
        if unit == "bytes":
            amount = DownloadColumn()
        else:
            amount = TextColumn("{task.completed:,}/{task.total:,} rows")
        columns: list[ProgressColumn] = [
            TextColumn(label),
            BarColumn(),
            TaskProgressColumn(),
            amount,
        ]
        if unit == "bytes":
            columns.append(TextColumn("{task.fields[rows]:,} rows"))
        columns += [_RowRate(), TimeRemainingColumn()]
        # stdout carries the exported data: the bar must not take it over (rich's default).
        self._bar = Progress(
            *columns,
            console=self.console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._bar.add_task(label, total=total, rows=0)

    def __enter__(self) -> Meter:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._flush()
        if self._bar is not None:
            self._bar.stop()

    def rows(self, n: int = 1) -> None:
        """Count `n` more rows done."""
        self.done_rows += n
        self._pending += n
        if self._pending >= _FLUSH_ROWS:
            self._flush()

    def read(self, n: int) -> None:
        """Count `n` more bytes read (a bar in bytes)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=n)

    def _flush(self) -> None:
        if self._bar is not None and self._task is not None and self._pending:
            advance = self._pending if self.unit == "rows" else 0
            self._bar.update(self._task, advance=advance, rows=self.done_rows)
        self._pending = 0


def read_file(path: Path, meter: Meter | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a TraceLab .jsonl or .jsonl.gz file, its bytes read counted on `meter`.
    Raises TraceLabFormatError naming the line of the first that is no TraceLab row (the
    first row is checked fully, the rest for the fields every row has).

    Example: for row in read_file(Path("rounds.jsonl.gz"), meter): ...
    """
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        seen = 0
        first = True
        for lineno, line in enumerate(stream, 1):
            if lineno % 256 == 0 and meter is not None:
                at = raw.tell()
                meter.read(at - seen)
                seen = at
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceLabFormatError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            except UnicodeDecodeError:
                raise TraceLabFormatError(f"{path}:{lineno}: not UTF-8 text") from None
            if not isinstance(row, dict):
                raise TraceLabFormatError(f"{path}:{lineno}: a row must be a JSON object")
            problems = check_row(row) if first else _missing(row)
            if problems:
                raise TraceLabFormatError(f"{path}:{lineno}: " + "; ".join(problems))
            first = False
            yield row
            if meter is not None:
                meter.rows()
        if meter is not None:
            meter.read(raw.tell() - seen)


def _missing(row: dict[str, Any]) -> list[str]:
    if _REQUIRED <= row.keys():
        return []
    return [f"missing field {key!r}" for key in sorted(_REQUIRED - row.keys())]


def _check_target(path: Path, *, directory: bool) -> None:
    """A UserError unless `path` can be written as a file (or a directory)."""
    if directory and path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file — -o takes a directory for this format")
    if not directory and path.is_dir():
        raise UserError(f"{path} is a directory — give -o a file name, e.g. {path / 'out'}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot write {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: no permission to write in {ancestor}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def staged(path: Path, *, directory: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write the output to: on success it takes `path`'s
    place (a directory's entries replace the same-named ones in an existing `path`); on any
    error it is removed, so no partial output is left. A path that cannot be written is a
    UserError before anything is created.

    Example: with staged(Path("out.jsonl.gz")) as tmp: write(tmp)
    """
    _check_target(path, directory=directory)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")  # keeps the suffix (.gz)
    try:
        yield tmp
        if directory and path.is_dir():
            for entry in sorted(tmp.iterdir()):
                _remove(path / entry.name)
                os.replace(entry, path / entry.name)
            tmp.rmdir()
        else:
            os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        if exc.filename is not None and Path(exc.filename).name.startswith(".partial-"):
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    except BaseException:
        _remove(tmp)
        raise
