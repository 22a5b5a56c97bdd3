"""The CLI's one error path: a user's mistake ends a command with one line, never a traceback.

Commands and their helpers raise `UserError` (a message naming the input and what to do);
`TracetapGroup`, the root command's class, catches it, and translates the library exceptions a
user can cause (a bad database URL, a store that cannot be opened, a path that cannot be read or
written, a corrupt archive, bad JSON) into one as well. `--debug` on the root command shows the
traceback instead.

Exit codes:
  0  done;
  1  nothing to show: no recordings yet in the store, or a filter that matches nothing;
  2  a mistake to fix: a bad option, URL or path, a store that cannot be opened, a corrupt file.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import zlib
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import (
    NoArgsIsHelpError,
    UsageError,
)  # typer's own click: it has no public name
from typer.core import TyperGroup

__all__ = [
    "DEBUG_KEY",
    "MISTAKE",
    "NOTHING",
    "TracetapGroup",
    "UserError",
    "bad_url",
    "remember_url",
    "user_error",
]

NOTHING = 1  # exit code: nothing to show
MISTAKE = 2  # exit code: the user's input needs fixing
DEBUG_KEY = "tracetap.debug"  # in click's ctx.meta, set by the root's --debug
_urls: list[str] = []  # the database URLs the running command opened

err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line


class UserError(Exception):
    """A message for the user (one line naming the input and what to do) and the exit code."""

    def __init__(self, message: str, code: int = MISTAKE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def bad_url(url: str) -> UserError:
    """The line for a `--db` (or --from/--to) value that is no URL of a database tracetap can
    open: not a URL, an unknown scheme, a database whose driver is not installed."""
    from tracetap.storage.db import display_url

    return UserError(
        f"{display_url(url)}: not a database URL tracetap can open "
        "— use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def user_error(exc: BaseException, *urls: str) -> UserError | None:
    """`exc` as a UserError when it is one a user can cause and fix, else None (a bug).
    Text from a database driver has the passwords of `urls` hidden.

    Example: user_error(FileNotFoundError(2, "No such file", "x.jsonl")) -> "x.jsonl: No such file"
    """
    import sqlalchemy as sa

    from tracetap.pricing import PriceFileError
    from tracetap.storage.db import SchemaError, hide_passwords

    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, PriceFileError):  # names the file and what is wrong in it
        return UserError(str(exc))
    if isinstance(exc, SchemaError):
        return UserError(hide_passwords(str(exc), *urls))
    if isinstance(exc, (sa.exc.ArgumentError, sa.exc.NoSuchModuleError)):
        return UserError(
            f"not a database URL tracetap can open: {hide_passwords(_first_line(exc), *urls)} "
            "— use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if isinstance(exc, sa.exc.DBAPIError):
        reason = hide_passwords(_first_line(exc.orig or exc), *urls)
        return UserError(f"cannot use the database: {reason}")
    if isinstance(exc, (gzip.BadGzipFile, zlib.error, EOFError)):
        return UserError(f"a compressed file is corrupt or cut short: {_first_line(exc)}")
    if isinstance(exc, json.JSONDecodeError):
        return UserError(f"not valid JSON: {exc.msg} (line {exc.lineno})")
    if isinstance(exc, UnicodeDecodeError):
        return UserError(f"not UTF-8 text: {_first_line(exc)}")
    if isinstance(exc, OSError):
        name = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or _first_line(exc)
        return UserError(f"{name}: {reason}" if name else reason)
    return None


def remember_url(url: str) -> None:
    """Note a database URL the command uses, so that an error from its driver that reaches
    TracetapGroup still has the URL's password hidden."""
    _urls.append(url)


def _usage_line(exc: UsageError) -> NoReturn:
    """Click's usage error (an unknown command, a missing argument, a value of the wrong type)
    as one line that says where the command's help is, instead of click's usage block."""
    if isinstance(exc, NoArgsIsHelpError):  # a group given no command: its help, as click does
        exc.show()
        raise typer.Exit(exc.exit_code)
    where = f" — see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
    err.print(f"[red]error:[/red] {escape(exc.format_message())}{where}")
    raise typer.Exit(exc.exit_code)


class TracetapGroup(TyperGroup):
    """The root command: turns UserError, and the library errors `user_error` knows, into one
    red line and its exit code, unless --debug asked for the traceback."""

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:  # a bad root option
            _usage_line(exc)

    def invoke(self, ctx: Any) -> Any:  # click.Context (typer ships its own click)
        _urls.clear()
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # an unknown command, a missing argument, a bad value
            _usage_line(exc)
        except BrokenPipeError:  # the reader stopped early (`| head`): nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as exc:  # typer's Exit and click's own errors are no UserError: re-raised
            error = user_error(exc, *_urls)
            if error is None or ctx.meta.get(DEBUG_KEY):
                raise
            err.print(f"[red]error:[/red] {escape(error.message)}")
            raise typer.Exit(error.code) from None
