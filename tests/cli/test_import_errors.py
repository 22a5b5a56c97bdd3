"""`tracetap import` on input that is not what the command reads: one line saying what the
input looks like and which command fits (exit 2), nothing to import is exit 1, and unreadable
agent-log lines are counted, never skipped in silence. No store is created by a failed import."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tracetap.cli import app

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "fixtures" / "tracelab_sample.jsonl"
CLAUDE = ROOT / "importers" / "data" / "claude_session.jsonl"
CODEX = ROOT / "importers" / "data" / "codex_rollout.jsonl"

runner = CliRunner()


def run(tmp_path: Path, *args: str) -> Result:
    return runner.invoke(app, ["import", *args, "--db", f"sqlite:///{tmp_path / 'store.db'}"])


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return " ".join(lines[0].split())


def test_codex_on_a_claude_code_directory_names_claude_code(tmp_path: Path) -> None:
    logs = tmp_path / "projects" / "webapp"
    logs.mkdir(parents=True)
    shutil.copy(CLAUDE, logs / "5f0c.jsonl")
    line = one_error_line(run(tmp_path, "codex", str(tmp_path / "projects")), 2)
    assert line == (
        f"error: {tmp_path / 'projects'} holds Claude Code session logs — use "
        f"`tracetap import claude-code {tmp_path / 'projects'}`"
    )
    assert not (tmp_path / "store.db").exists()


def test_claude_code_on_a_tracelab_file_names_import_tracelab(tmp_path: Path) -> None:
    line = one_error_line(run(tmp_path, "claude-code", str(FIXTURE)), 2)
    assert line == (
        f"error: {FIXTURE} looks like TraceLab rows — use `tracetap import tracelab {FIXTURE}`"
    )
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    line = one_error_line(run(tmp_path, "codex", str(packed)), 2)
    assert line.endswith(f"looks like TraceLab rows — use `tracetap import tracelab {packed}`")
    assert not (tmp_path / "store.db").exists()


def test_tracelab_on_an_agent_log_names_its_command(tmp_path: Path) -> None:
    line = one_error_line(run(tmp_path, "tracelab", str(CODEX)), 2)
    assert (
        line == f"error: {CODEX} looks like a Codex rollout — use `tracetap import codex {CODEX}`"
    )
    assert not (tmp_path / "store.db").exists()


def test_tracelab_on_a_directory_is_refused(tmp_path: Path) -> None:
    line = one_error_line(run(tmp_path, "tracelab", str(tmp_path)), 2)
    assert line == (
        f"error: {tmp_path} is a directory — `tracetap import tracelab` reads one .jsonl or "
        ".jsonl.gz file"
    )
    shutil.copy(CLAUDE, tmp_path / "a.jsonl")
    line = one_error_line(run(tmp_path, "tracelab", str(tmp_path)), 2)
    hint = f"holds Claude Code session logs — use `tracetap import claude-code {tmp_path}`"
    assert line.endswith(f"; {tmp_path} {hint}")
    assert not (tmp_path / "store.db").exists()


def test_tracelab_on_a_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "rows.jsonl.gz"
    bad.write_bytes(b"no gzip here\n")
    line = one_error_line(run(tmp_path, "tracelab", str(bad)), 2)
    assert line.startswith(f"error: {bad}: a corrupt or cut-short gzip file (")


@pytest.mark.parametrize("source", ["tracelab", "claude-code", "codex"])
def test_a_missing_input_is_a_mistake(source: str, tmp_path: Path) -> None:
    line = one_error_line(run(tmp_path, source, str(tmp_path / "nope.jsonl")), 2)
    assert line.startswith(f"error: {tmp_path / 'nope.jsonl'} does not exist")


def test_nothing_to_import_is_exit_1(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    line = one_error_line(run(tmp_path, "tracelab", str(empty)), 1)
    assert line == f"error: no TraceLab rows in {empty}: the file is empty"
    logs = tmp_path / "sessions"
    logs.mkdir()
    (logs / "a.jsonl").write_text('{"type": "event_msg", "payload": {}}\n{torn\n')
    line = one_error_line(run(tmp_path, "codex", str(logs)), 1)
    assert line == (
        f"error: no Codex rounds in {logs} (1 .jsonl files read); skipped 1 unreadable line "
        f"(first at line 2 of {logs / 'a.jsonl'})"
    )
    assert not (tmp_path / "store.db").exists()


def test_unreadable_log_lines_are_counted(tmp_path: Path) -> None:
    lines = CLAUDE.read_text().splitlines()
    torn = lines[:3] + ["{garbage", "[1, 2]"] + lines[3:] + ['{"type": "assistant", "mess']
    log = tmp_path / "s.jsonl"
    log.write_text("\n".join(torn) + "\n")
    result = run(tmp_path, "claude-code", str(log))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip().endswith(
        f"; skipped 3 unreadable lines (first at line 4 of {log})"
    )
    clean = run(tmp_path, "claude-code", str(CLAUDE))
    assert clean.exit_code == 0 and "unreadable" not in clean.stderr


def test_a_repeated_import_says_what_is_already_stored(tmp_path: Path) -> None:
    first = run(tmp_path, "tracelab", str(FIXTURE))
    assert first.exit_code == 0 and first.stderr.strip() == f"imported 19 new rounds from {FIXTURE}"
    again = run(tmp_path, "tracelab", str(FIXTURE))
    assert again.exit_code == 0
    assert again.stderr.strip() == (
        f"imported 0 new rounds from {FIXTURE} (19 already in the store)"
    )


def test_a_bad_row_names_its_line(tmp_path: Path) -> None:
    rows = FIXTURE.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([rows[0], rows[1], '{"provider": "claude"}']) + "\n")
    line = one_error_line(run(tmp_path, "tracelab", str(bad)), 2)
    assert line.startswith(f"error: {bad}:3: missing field ")


def test_imported_sessions_carry_their_project(tmp_path: Path) -> None:
    """--project finds imported rows in the store as it does in the file."""
    assert run(tmp_path, "claude-code", str(CLAUDE)).exit_code == 0
    db = f"sqlite:///{tmp_path / 'store.db'}"
    everything = runner.invoke(app, ["export", "tracelab", "--db", db]).stdout
    result = runner.invoke(app, ["export", "tracelab", "--db", db, "--project", "webapp"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == everything and everything.count("\n") == 4
    result = runner.invoke(app, ["export", "tracelab", "--db", db, "--project", "other"])
    assert result.exit_code == 1
