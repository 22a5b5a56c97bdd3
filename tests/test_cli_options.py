"""Every `--db` is the shared option: TRACETAP_DB names the store for each command that has one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from tracetap.cli import app
from tracetap.storage.db import ensure_schema, make_engine

FIXTURE = Path(__file__).parent / "fixtures" / "tracelab_sample.jsonl"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) of every command under `group` (typer ships its own click)."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += _commands(cmd, (*prefix, name))
        else:
            out.append(((*prefix, name), cmd))
    return out


def _documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (rich indents each)."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while text[i:].strip():
        while text[i].isspace():
            i += 1
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
    return docs


def test_every_db_option_reads_tracetap_db() -> None:
    with_db = []
    for path, cmd in _commands(typer.main.get_command(app)):
        for param in cmd.params:
            if "--db" in param.opts:
                with_db.append(path)
                assert param.envvar == "TRACETAP_DB", f"tracetap {' '.join(path)} --db"
    for path in [("sessions",), ("show",), ("cache",), ("proxy",), ("export", "tracelab")]:
        assert path in with_db
    assert ("import", "tracelab") in with_db and ("db", "check") in with_db


def test_commands_use_the_store_tracetap_db_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    engine.dispose()
    runner = CliRunner()
    env = {"TRACETAP_DB": url}

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, (args, result.output)
        return result.output

    run("import", "tracelab", str(FIXTURE))
    listed = _documents(run("sessions", "--json", "--limit", "0"))
    assert listed and sum(s["rounds"] for s in listed) > 0
    first = f"{listed[0]['provider']}:{listed[0]['session']}"
    assert json.loads(run("show", first, "--json"))["session"] == first
    lines = [json.loads(line) for line in run("cache", "--all", "--json").splitlines() if line]
    assert lines[-1]["type"] == "summary"  # JSON lines: a row per round, then the summary
    assert all(r["type"] == "round" for r in lines[:-1])
    out = tmp_path / "rows.jsonl"
    run("export", "tracelab", "--kind", "all", "-o", str(out))
    assert len(out.read_text().splitlines()) == sum(s["rounds"] for s in listed)
    run("db", "check")
