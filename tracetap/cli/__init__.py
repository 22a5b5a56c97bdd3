"""The `tracetap` command line: a thin shell that gathers each area's commands.

Each command module holds one area's commands and `register(app)`; options.py the shared options.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="tracetap",
    help="Record what coding agents really do on the wire, then export, analyse and replay it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Record what coding agents really do on the wire, then export, analyse and replay it."""


# One line per area; each module defines register(app).
_COMMAND_MODULES: tuple[str, ...] = (
    "tracetap.cli.proxy",
    "tracetap.cli.store",
    "tracetap.cli.export",
    "tracetap.cli.imports",
    "tracetap.cli.analyze",
    "tracetap.cli.cache",
    "tracetap.cli.replay",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Console-script entry point."""
    app()
