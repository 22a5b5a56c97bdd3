"""The store commands' mistakes are one line and an exit code, never a traceback, and create
nothing; `tracetap --debug` shows the traceback instead."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.proxy import free_port

NO_RECORDINGS = "no recordings yet in {url} — run `tracetap proxy` or `tracetap import`"


def _tracetap(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETAP_")}
    return subprocess.run(
        [sys.executable, "-m", "tracetap", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def _one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single error line, after checking the exit code and that nothing else was said."""
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one line: no traceback
    assert lines[0].startswith("error: ")
    return lines[0]


def _debug_shows_traceback(*args: str) -> str:
    done = _tracetap("--debug", *args)
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    return done.stderr


def _schemaless(tmp_path: Path) -> str:
    """A SQLite file that exists but holds no tracetap schema."""
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


def _files(tmp_path: Path) -> set[Path]:
    return set(tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "command",
    [["sessions"], ["show", "abc"], ["db", "check"]],
    ids=" ".join,
)
def test_a_store_without_schema_has_no_recordings_yet(tmp_path: Path, command: list[str]) -> None:
    url = _schemaless(tmp_path)
    before = _files(tmp_path)
    line = _one_line(_tracetap(*command, "--db", url), 1)
    assert line == "error: " + NO_RECORDINGS.format(url=url)
    assert _files(tmp_path) == before  # no -wal, -shm or schema written either
    assert (tmp_path / "empty.db").read_bytes() == b""  # not even a journal mode
    _debug_shows_traceback(*command, "--db", url)


def test_push_from_a_store_without_schema_has_no_recordings_yet(tmp_path: Path) -> None:
    url = _schemaless(tmp_path)
    target = tmp_path / "team.db"
    line = _one_line(_tracetap("push", "--from", url, "--to", f"sqlite:///{target}"), 1)
    assert line == "error: " + NO_RECORDINGS.format(url=url)
    assert not target.exists()
    _debug_shows_traceback("push", "--from", url, "--to", f"sqlite:///{target}")


@pytest.mark.parametrize("command", [["sessions"], ["show", "abc"]], ids=" ".join)
def test_a_missing_sqlite_file_in_a_missing_dir_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    line = _one_line(_tracetap(*command, "--db", f"sqlite:///{missing}"), 2)
    assert line == f"error: {missing}: no such SQLite store (nothing was created) — check --db"
    assert not (tmp_path / "nonexistent").exists()
    _debug_shows_traceback(*command, "--db", f"sqlite:///{missing}")


def test_the_documented_nonexistent_path_creates_nothing() -> None:
    line = _one_line(_tracetap("sessions", "--db", "sqlite:////nonexistent/dir/x.db"), 2)
    assert "/nonexistent/dir/x.db: no such SQLite store (nothing was created)" in line
    assert not Path("/nonexistent").exists()


def test_db_check_on_a_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    line = _one_line(_tracetap("db", "check", "--db", url), 2)
    assert line.endswith(f"— to create it: tracetap db upgrade --db {url}")
    assert not (tmp_path / "sub").exists()
    _debug_shows_traceback("db", "check", "--db", url)


@pytest.mark.parametrize("url", ["notaurl", "foo://bar", "mysql://u@h/db"])
@pytest.mark.parametrize("command", [["sessions"], ["show", "abc"], ["db", "check"]], ids=" ".join)
def test_a_url_tracetap_cannot_open_is_one_line(
    tmp_path: Path, command: list[str], url: str
) -> None:
    line = _one_line(_tracetap(*command, "--db", url, cwd=tmp_path), 2)
    assert line == (
        f"error: {url}: not a database URL tracetap can open "
        "— use sqlite:///PATH or postgresql://USER@HOST/DB"
    )
    assert _files(tmp_path) == set()  # not even a file named after the text
    _debug_shows_traceback(*command, "--db", url)


def test_push_to_a_url_tracetap_cannot_open_is_one_line(tmp_path: Path) -> None:
    source = _schemaless(tmp_path)
    line = _one_line(_tracetap("push", "--from", "foo://bar", "--to", source), 2)
    assert "foo://bar: not a database URL tracetap can open" in line


@pytest.mark.parametrize("command", [["db", "check"], ["sessions"]], ids=" ".join)
def test_a_postgresql_port_where_nothing_listens_is_one_line(command: list[str]) -> None:
    url = f"postgresql://tracetap@127.0.0.1:{free_port()}/tracetap"
    line = _one_line(_tracetap(*command, "--db", url), 2)
    assert line.startswith(f"error: cannot open {url}: ")
    assert "Connection refused" in line or "connection failed" in line
    assert "OperationalError" in _debug_shows_traceback(*command, "--db", url)  # the cause


def test_push_from_a_missing_sqlite_file_says_check_from(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    target = tmp_path / "team.db"
    line = _one_line(
        _tracetap("push", "--from", f"sqlite:///{missing}", "--to", f"sqlite:///{target}"), 2
    )
    assert line == f"error: {missing}: no such SQLite store (nothing was created) — check --from"
    assert not missing.exists() and not target.exists()
    _debug_shows_traceback("push", "--from", f"sqlite:///{missing}", "--to", f"sqlite:///{target}")


def test_a_bad_price_file_is_one_line(tmp_path: Path) -> None:
    from tracetap.storage.db import ensure_schema, make_engine

    url = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_schema(make_engine(url))
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."x"]\ninput = 1.0\n')
    line = _one_line(_tracetap("sessions", "--db", url, "--prices", str(prices)), 2)
    assert line == f'error: {prices}: models."x" has no output price'
    _debug_shows_traceback("sessions", "--db", url, "--prices", str(prices))


def test_version_prints_the_package_version() -> None:
    done = _tracetap("--version")
    assert done.returncode == 0 and done.stdout == "tracetap 0.1.0\n"


def test_push_to_a_postgresql_port_where_nothing_listens_is_one_line(tmp_path: Path) -> None:
    from tests.storage.rounds import claude_session
    from tracetap.storage.db import ensure_schema, make_engine
    from tracetap.storage.writer import Writer

    source = f"sqlite:///{tmp_path / 'local.db'}"
    engine = make_engine(source)
    ensure_schema(engine)
    Writer(engine).write(claude_session(1))
    engine.dispose()
    target = f"postgresql://tracetap:s3cret@127.0.0.1:{free_port()}/tracetap"
    line = _one_line(_tracetap("push", "--from", source, "--to", target), 2)
    assert line.startswith("error: push failed: ") and "s3cret" not in line
    assert "OperationalError" in _debug_shows_traceback("push", "--from", source, "--to", target)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sessions", "--limit", "many"], "Invalid value for '--limit'"),
        (["replay"], "Missing argument 'INPUT'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["--bogus"], "No such option: --bogus"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_usage_mistake_is_one_line_pointing_at_help(args: list[str], says: str) -> None:
    line = _one_line(_tracetap(*args), 2)
    assert says in line and line.endswith("--help`")


def test_a_reader_that_stops_early_is_no_error(tmp_path: Path) -> None:
    # `tracetap sessions --json | head -1` on a store with many sessions: no "Broken pipe"
    from tests.storage.rounds import claude_session
    from tracetap.storage.db import ensure_schema, make_engine
    from tracetap.storage.writer import Writer

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    for i in range(400):
        Writer(engine).write(claude_session(1, session=f"s{i:04d}", t0=1_780_000_000.0 + i))
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETAP_")}
    shell = f"{sys.executable} -m tracetap sessions --limit 0 --json --db {url} | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, env=env
    )
    assert done.stdout.count("\n") == 1 and done.stderr == "", done.stderr
    assert done.returncode == 0
