"""`tracetap push`: a contributor's local store into the team database, idempotently."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.storage.rounds import claude_session
from tracetap.exporters.tracelab import iter_rows
from tracetap.importers.tracelab import import_rows
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.reconstruct import request_body
from tracetap.storage.writer import Writer
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"


def _push(src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracetap", "push", "--from", src, "--to", dst],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_push_copies_everything_once(tmp_path: Path, pg_url: str) -> None:
    src = f"sqlite:///{tmp_path / 'local.db'}"
    engine = make_engine(src)
    ensure_schema(engine)
    rounds = claude_session(6)
    Writer(engine).write(rounds)
    import_rows(src, read_rows(FIXTURE), source="tracelab")
    first = _push(src, pg_url)
    assert first.returncode == 0, first.stderr
    assert "pushed 25 new rounds (0 already there)" in first.stderr
    again = _push(src, pg_url)
    assert again.returncode == 0 and "pushed 0 new rounds (25 already there)" in again.stderr
    assert list(iter_rows(pg_url, kind="all")) == list(iter_rows(src, kind="all"))
    with Session(make_engine(pg_url)) as s:
        last = s.scalar(sa.select(m.Round).where(m.Round.uid == rounds[-1].uid))
        assert last is not None
        assert request_body(s, last)["messages"] == rounds[-1].messages
        assert s.scalar(sa.select(sa.func.count()).select_from(m.Round)) == 25


def test_push_from_a_missing_store_says_so_and_creates_nothing(tmp_path: Path, pg_url: str) -> None:
    missing = tmp_path / "nothing.db"
    proc = _push(f"sqlite:///{missing}", pg_url)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"{missing}: no such SQLite store" in proc.stderr
    assert not missing.exists()


def test_push_from_a_store_with_no_recordings_says_so(tmp_path: Path, pg_url: str) -> None:
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()  # a file, no schema
    proc = _push(f"sqlite:///{empty}", pg_url)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "no recordings yet in" in proc.stderr


def _push_on_a_terminal(src: str, dst: str) -> tuple[int, str]:
    """Run push with stderr on a pseudo-terminal; its exit code and everything it drew there."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracetap", "push", "--from", src, "--to", dst],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env | {"COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(slave)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode(errors="replace"))  # no colours
    return proc.wait(timeout=120), text


def test_push_shows_progress_on_a_terminal_and_stays_quiet_otherwise(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'local.db'}"
    engine = make_engine(src)
    ensure_schema(engine)
    rounds = []
    for k in range(30):  # 600 rounds: more than one chunk of 500, so a rate is measured
        rounds += claude_session(20, session=f"s{k}", t0=1_780_000_000.0 + k * 1_000)
    Writer(engine).write(rounds)
    engine.dispose()
    code, drawn = _push_on_a_terminal(src, f"sqlite:///{tmp_path / 'team.db'}")
    assert code == 0, drawn
    assert "100%" in drawn and "600/600" in drawn  # percent, done of total
    assert "rounds/s" in drawn  # the rate
    assert "0:00:0" in drawn  # the time left
    assert "pushed 600 new rounds" in drawn
    quiet = _push(src, f"sqlite:///{tmp_path / 'other.db'}")
    assert quiet.returncode == 0
    [line] = quiet.stderr.splitlines()  # stderr is no terminal: no bar, the summary alone
    assert line.startswith("pushed 600 new rounds (0 already there)")
