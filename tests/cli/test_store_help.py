"""Help fits 80 columns: every command's and subcommand's `--help` wraps its text and cuts
no option name or line."""

from __future__ import annotations

import re
from typing import Any

import typer.main
from typer.testing import CliRunner

from tracetap.cli import app


def _paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every group and command under `group` (typer ships its own click)."""
    out: list[tuple[str, ...]] = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if hasattr(cmd, "commands"):
            out += _paths(cmd, (*prefix, name))
    return out


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, color=False)
    assert result.exit_code == 0, (path, result.output)
    return result.output


def test_every_help_fits_80_columns_without_cutting_anything() -> None:
    root = typer.main.get_command(app)
    paths = [(), *_paths(root)]
    assert ("proxy",) in paths and ("db", "check") in paths
    for path in paths:
        text = _help(*path)
        where = f"tracetap {' '.join(path)} --help"
        cut = [
            line
            for line in text.splitlines()
            if re.search(r"(…|\.\.\.)\s*(│|$)", line) and not line.startswith("Usage:")
        ]  # a cut summary ends in "..."; a usage line's [ARGS]... is click's notation
        assert not cut, f"{where} cuts something: {cut}"
        wide = [line for line in text.splitlines() if len(line) > 80]
        assert not wide, f"{where} has lines wider than 80 columns: {wide}"
        for param in getattr(root if not path else _command(root, path), "params", []):
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in text, f"{where} does not show {opt} whole"


def _command(root: Any, path: tuple[str, ...]) -> Any:
    cmd = root
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def test_proxy_help_shows_its_long_option_names_whole() -> None:
    text = _help("proxy")
    assert "--anthropic-upstream" in text and "--openai-upstream" in text
