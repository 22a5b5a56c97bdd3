"""`tracetap export FORMAT` on wrong input, for all seven formats: one line, the exit code a
script can act on, no traceback, and no output file left behind; and the shared filters."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.storage.rounds import claude_session
from tracetap.cli import app
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import Writer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tracelab_sample.jsonl"
EXE = str(Path(sys.executable).parent / "tracetap")
# Every format with an -o that names a file (atif writes a file for a .jsonl name).
FILE_FORMATS = {
    "tracelab": "out.jsonl",
    "tracelab-duckdb": "out.duckdb",
    "replay-csv": "out.csv",
    "mooncake": "out.jsonl",
    "otel": "out.json",
    "atif": "out.jsonl",
}
# The formats whose -o is a directory.
DIR_FORMATS = {"parquet": "tables", "atif": "trajectories"}
FORMATS = ["tracelab", "tracelab-duckdb", "replay-csv", "mooncake", "atif", "otel", "parquet"]
OUT_NAMES = {**FILE_FORMATS, "parquet": "tables"}

runner = CliRunner()


def export(*args: str, db: str | None = None) -> Result:
    env = {"TRACETAP_DB": db} if db else {}
    return runner.invoke(app, ["export", *args], env=env)


def one_error_line(result: Result, code: int) -> str:
    """The error line of a failed run, after checking it is the only output and its code."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return " ".join(lines[0].split())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with two recorded Claude Code sessions of 3 rounds each."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    writer = Writer(engine)
    writer.write(claude_session(3, session="abc123-0001"))
    writer.write(claude_session(3, session="def456-0002", t0=1_780_100_000.0))
    engine.dispose()
    return url


@pytest.fixture
def empty_store(tmp_path: Path) -> str:
    """A SQLite file with no tracetap schema (as `tracetap db` or another tool leaves one)."""
    import sqlite3

    path = tmp_path / "empty.db"
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.close()
    return f"sqlite:///{path}"


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_store_without_recordings_says_so(fmt: str, empty_store: str, tmp_path: Path) -> None:
    out = tmp_path / "out" / OUT_NAMES[fmt]
    line = one_error_line(export(fmt, "-o", str(out), db=empty_store), 1)
    assert line.startswith("error: no recordings yet in sqlite:///")
    assert "run `tracetap proxy` or `tracetap import`" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", sorted(set(FILE_FORMATS) - {"atif"}))
def test_output_to_a_directory_is_refused(fmt: str, store: str, tmp_path: Path) -> None:
    line = one_error_line(export(fmt, "-o", str(tmp_path), db=store), 2)
    assert line == f"error: {tmp_path} is a directory — give -o a file name, e.g. {tmp_path}/out"
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("fmt", sorted(DIR_FORMATS))
def test_a_directory_output_that_is_a_file_is_refused(fmt: str, store: str, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("keep me")
    line = one_error_line(export(fmt, "-o", str(target), db=store), 2)
    assert line == f"error: {target} is a file — -o takes a directory for this format"
    assert target.read_text() == "keep me" and files_under(tmp_path) == ["taken"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unwritable_output_names_the_path(fmt: str, store: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = blocker / OUT_NAMES[fmt]
    line = one_error_line(export(fmt, "-o", str(out), db=store), 2)
    assert line == f"error: cannot write {out}: {blocker} is not a directory"
    assert files_under(tmp_path) == ["file.txt"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_corrupt_gzip_input_leaves_no_output(fmt: str, tmp_path: Path) -> None:
    bad = tmp_path / "rows.jsonl.gz"
    bad.write_bytes(b"this is no gzip data\n" * 10)
    out = tmp_path / "out" / OUT_NAMES[fmt]
    line = one_error_line(export(fmt, "-i", str(bad), "-o", str(out)), 2)
    assert line.startswith(f"error: {bad}: a corrupt or cut-short gzip file")
    assert files_under(tmp_path) == ["rows.jsonl.gz"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_gzip_cut_short_midway_leaves_no_partial_output(fmt: str, tmp_path: Path) -> None:
    """Rows are read and written before the damage is found; the output must not stay."""
    whole = gzip.compress(FIXTURE.read_bytes() * 50)
    cut = tmp_path / "rows.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 3 // 4])
    out = tmp_path / OUT_NAMES[fmt]
    line = one_error_line(export(fmt, "-i", str(cut), "-o", str(out)), 2)
    assert line.startswith(f"error: {cut}: a corrupt or cut-short gzip file")
    assert files_under(tmp_path) == ["rows.jsonl.gz"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_input_is_a_mistake(fmt: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    out = tmp_path / OUT_NAMES[fmt]
    line = one_error_line(export(fmt, "-i", str(missing), "-o", str(out)), 2)
    assert line == (
        f"error: --input {missing} does not exist — give a TraceLab .jsonl or .jsonl.gz file"
    )
    assert files_under(tmp_path) == []


def test_an_agent_log_as_input_names_the_import_command(tmp_path: Path) -> None:
    log = Path(__file__).parents[1] / "importers" / "data" / "claude_session.jsonl"
    line = one_error_line(export("tracelab", "-i", str(log)), 2)
    assert line == (
        f"error: {log} is no TraceLab file but an agent log — import it with "
        f"`tracetap import claude-code {log}`, then export from the store"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_session_that_matches_nothing_is_exit_1(fmt: str, store: str, tmp_path: Path) -> None:
    out = tmp_path / OUT_NAMES[fmt]
    line = one_error_line(export(fmt, "--session", "nope", "-o", str(out), db=store), 1)
    assert line.startswith("error: nothing in sqlite:///") and "matches session nope" in line
    assert files_under(tmp_path) == []


def test_filters_that_match_nothing_in_a_file_are_exit_1(tmp_path: Path) -> None:
    line = one_error_line(export("mooncake", "-i", str(FIXTURE), "--model", "gemini"), 1)
    assert line.startswith(f"error: nothing in {FIXTURE} matches model gemini")
    line = one_error_line(
        export("tracelab", "-i", str(FIXTURE), "--kind", "main", "--agent", "openai"), 1
    )
    assert "matches agent openai (--kind main)" in line


def test_an_unknown_agent_is_a_mistake(store: str) -> None:
    line = one_error_line(export("tracelab", "--agent", "gemini", db=store), 2)
    assert line.startswith("error: unknown agent 'gemini': use one of claude")
    result = export("tracelab", "--provider", "claude", db=store)
    assert result.exit_code == 2 and "No such option: --provider" in result.stderr


def test_bad_values_are_one_line(store: str) -> None:
    line = one_error_line(export("tracelab", "--kind", "side", db=store), 2)
    assert line == "error: --kind 'side': use one of main, agent, all"
    line = one_error_line(export("tracelab", "--since", "yesterday", db=store), 2)
    assert line.startswith("error: --since: 'yesterday' is not an ISO-8601 time")
    line = one_error_line(export("mooncake", "--block-size", "0", db=store), 2)
    assert line == "error: --block-size 0: must be a positive number of tokens"
    line = one_error_line(export("replay-csv", "--waits", "x", db=store), 2)
    assert line.startswith("error: --waits 'x': use one of ")


def _session_ids(text: str) -> list[str]:
    return [json.loads(line)["session_id"] for line in text.splitlines()]


def test_a_session_id_prefix_selects_like_show(store: str, tmp_path: Path) -> None:
    result = export("tracelab", "--session", "abc", db=store)
    assert result.exit_code == 0, result.stderr
    assert _session_ids(result.stdout) == ["claude:abc123-0001"] * 3
    assert result.stderr.strip() == "wrote 3 rows"
    result = export("tracelab", "--session", "claude:def4", "--session", "abc1", db=store)
    assert sorted(set(_session_ids(result.stdout))) == ["claude:abc123-0001", "claude:def456-0002"]
    # The same prefix picks the same rows from the exported file.
    both = tmp_path / "both.jsonl.gz"
    assert export("tracelab", "-o", str(both), db=store).exit_code == 0
    result = export("tracelab", "-i", str(both), "--session", "def")
    assert _session_ids(result.stdout) == ["claude:def456-0002"] * 3


def test_time_and_model_filters_reach_the_store(store: str) -> None:
    result = export("tracelab", "--since", "2026-05-30", db=store)  # after the first session
    assert _session_ids(result.stdout) == ["claude:def456-0002"] * 3
    result = export("tracelab", "--until", "2026-05-30", "--model", "claude", db=store)
    assert _session_ids(result.stdout) == ["claude:abc123-0001"] * 3
    line = one_error_line(export("tracelab", "--agent", "codex", db=store), 1)
    assert "matches agent codex" in line


def test_a_file_written_over_stays_whole_until_the_new_one_is_done(
    store: str, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    out.write_text("old\n")
    assert export("tracelab", "--session", "nope", "-o", str(out), db=store).exit_code == 1
    assert out.read_text() == "old\n"
    assert export("tracelab", "--session", "abc", "-o", str(out), db=store).exit_code == 0
    assert len(out.read_text().splitlines()) == 3 and files_under(tmp_path) == ["rows.jsonl"]


def test_the_installed_command_gives_one_line_and_no_traceback(tmp_path: Path) -> None:
    """Run as a user runs it: the console script, a fresh process, stderr not a terminal."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "TRACETAP_DB"}
    env["TRACETAP_DB"] = f"sqlite:///{tmp_path / 'none.db'}"
    for args, code in (
        (["export", "parquet", "-i", str(FIXTURE), "-o", str(blocker / "t")], 2),
        (["export", "tracelab", "-i", str(FIXTURE), "--session", "nope"], 1),
        (["export", "tracelab"], 1),  # TRACETAP_DB names a store not made yet: created by none
    ):
        proc = subprocess.run(
            [EXE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == code, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert proc.stdout == ""
    assert files_under(tmp_path) == ["file.txt"]


def test_a_reader_that_stops_early_is_no_error(tmp_path: Path) -> None:
    """`tracetap export tracelab | head`: the closed pipe ends the export quietly."""
    big = tmp_path / "big.jsonl"
    big.write_text(FIXTURE.read_text() * 100)
    proc = subprocess.Popen(
        [EXE, "export", "tracelab", "-i", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100).startswith(b'{"provider":')
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


def test_parquet_into_an_existing_directory_replaces_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "tables"
    stale = out / "rounds" / "day=2020-01-01"
    stale.mkdir(parents=True)
    (stale / "part-00000.parquet").write_text("stale")
    (out / "README").write_text("mine")
    result = export("parquet", "-i", str(FIXTURE), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and (out / "README").read_text() == "mine"
    assert (out / "rounds" / "day=2026-06-01").is_dir() and (out / "timing_events").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["tables"]  # no temporary left
