"""The `tracetap` command line: a thin shell that gathers each area's commands.

Each command module holds one area's commands and `register(app)`; options.py the shared options.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Annotated

import typer

from tracetap.cli.errors import DEBUG_KEY, TracetapGroup

__all__ = ["app", "main"]

app = typer.Typer(
    name="tracetap",
    help="Record what coding agents really do on the wire, then export, analyse and replay it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's own help layout: it wraps help text and never cuts an option name, at any width
    # (rich's option tables cut both at 80 columns); max_content_width lets a wide terminal
    # use its width.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    cls=TracetapGroup,  # a user's mistake ends in one line and exit code 2 (cli/errors.py)
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"tracetap {version('tracetap')}")
        except PackageNotFoundError:  # running from a source tree that is not installed
            typer.echo("tracetap (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error instead of one line.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print tracetap's version."
        ),
    ] = False,
) -> None:
    """Record what coding agents really do on the wire, then export, analyse and replay it."""
    ctx.meta[DEBUG_KEY] = debug


# One line per area; each module defines register(app).
_COMMAND_MODULES: tuple[str, ...] = (
    "tracetap.cli.proxy",
    "tracetap.cli.store",
    "tracetap.cli.export",
    "tracetap.cli.imports",
    "tracetap.cli.analyze",
    "tracetap.cli.cache",
    "tracetap.cli.replay",
    "tracetap.cli.contribute",
    "tracetap.cli.ui",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _summary(text: str | None) -> str | None:
    """A command's one-line summary for its group's list: the help's first sentence, up to a
    colon. Click would otherwise cut the first paragraph to the terminal with "..."."""
    if not text:
        return None
    first = inspect.cleandoc(text).split("\n\n")[0].replace("\n", " ")
    head = re.split(r"(?<=[.:])\s", first + " ", maxsplit=1)[0].rstrip()
    return head[:-1] + "." if head.endswith(":") else head


def _give_summaries(group: typer.Typer) -> None:
    for command in group.registered_commands:
        if command.short_help is None:
            command.short_help = _summary(command.help or inspect.getdoc(command.callback))
    for sub in group.registered_groups:
        instance = sub.typer_instance
        if instance is None:
            continue
        if not isinstance(sub.short_help, str):  # unset: None or typer's default marker
            callback = instance.registered_callback
            doc = inspect.getdoc(callback.callback) if callback and callback.callback else None
            helps = (sub.help, instance.info.help, doc)
            sub.short_help = _summary(next((h for h in helps if isinstance(h, str)), None))
        _give_summaries(instance)


_give_summaries(app)


def main() -> None:
    """Console-script entry point."""
    app()
