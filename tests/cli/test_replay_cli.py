"""`tracetap replay` run as a user runs it (the installed command) against `tracetap serve-sim`
in its own process: what it reports with and without SLOs, what it says while it waits on a
terminal, and one line (exit 2) for an input or server it cannot use."""

from __future__ import annotations

import gzip
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.replay.simserver import free_port
from tests.replay.test_cli import _serve_sim
from tests.replay.traces import session_rows
from tracetap.tracelab import write_rows

EXE = str(Path(sys.executable).parent / "tracetap")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "tracelab_sample.jsonl"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="80")
    return subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = free_port()
    proc = _serve_sim(port, "--block-size", "16", "--decode-ms", "1")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _trace(path: Path, second_session_at: float = 0.2) -> Path:
    with path.open("w") as fh:
        write_rows(
            session_rows("a", 0.0, [(0, 64, 4), (68, 20, 4)], gap=0.5)
            + session_rows("b", second_session_at, [(0, 40, 2)]),
            fh,
        )
    return path


def _one_error_line(res: subprocess.CompletedProcess[str], text: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_without_slos_it_reports_latencies_and_claims_no_goodput(tmp_path: Path, url: str) -> None:
    res = run("replay", str(_trace(tmp_path / "t.jsonl")), "--url", url, "--model", "m")
    assert res.returncode == 0, res.stderr
    assert "3 ok / 3 sent / 3 planned" in res.stdout
    header = next(x for x in res.stdout.splitlines() if x.startswith("latency, ms"))
    assert header.split()[2:] == ["p50", "p90", "p99", "max", "n"]
    for name in ("TTFT", "TPOT", "end to end"):
        line = next(x for x in res.stdout.splitlines() if x.strip().startswith(name))
        assert line.split()[-1] == "3"  # measured over the three rounds
    assert "goodput: not measured, no SLO given" in res.stdout
    assert "met the SLO" not in res.stdout
    summary = json.loads((Path("replay-out") / "summary.json").read_text())
    assert summary["goodput"]["requests_meeting_slo"] is None


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # replay-out/ lands in the test's directory


def test_with_slos_met_and_missed_are_counted(tmp_path: Path, url: str) -> None:
    trace = str(_trace(tmp_path / "t.jsonl"))
    easy = run("replay", trace, "--url", url, "--model", "m", "--slo-ttft", "5000")
    assert easy.returncode == 0, easy.stderr
    assert (
        "goodput: 3 requests met the SLOs (100.0% of 3 sent; TTFT <= 5000 ms)\n"
        "  0 missed, 0 failed\n" in easy.stdout
    )
    # No response arrives within a microsecond: every round misses the TTFT SLO.
    hard = run("replay", trace, "--url", url, "--model", "m", "--slo-ttft", "0.001")
    assert hard.returncode == 0, hard.stderr
    assert "goodput: 0 requests met the SLOs (0.0% of 3 sent; TTFT <= 0.001 ms)" in hard.stdout
    assert "3 missed (3 over TTFT), 0 failed" in hard.stdout


def test_a_long_idle_stretch_is_announced(tmp_path: Path, url: str) -> None:
    trace = str(_trace(tmp_path / "t.jsonl", second_session_at=11_520.0))
    res = run("replay", trace, "--url", url, "--model", "m", "--max-idle", "1")
    assert res.returncode == 0 and "note:" not in res.stderr
    # Without --max-idle the gap takes 64 s at --speedup 180; not a terminal, it says so first.
    args = [EXE, "replay", trace, "--url", url, "--model", "m", "--speedup", "180"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        note = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert note.startswith("note: the trace has 3 h 11 min with no session under way")
    assert "(1 min 4 s at --speedup 180); --max-idle caps such stretches" in note


def _pty_run(args: list[str], until: str, limit: float = 60) -> str:
    """Run tracetap on a pseudo-terminal (stderr and stdout) until `until` appears; the text."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="80", TERM="xterm")
    proc = subprocess.Popen([EXE, *args], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline and until.encode() not in seen:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        os.close(master)
    return seen.decode(errors="replace")


def test_on_a_terminal_it_shows_progress_and_why_it_waits(tmp_path: Path, url: str) -> None:
    # b starts 3 h 12 min after a: at --speedup 60 that is over 3 min of wall time.
    trace = str(_trace(tmp_path / "t.jsonl", second_session_at=11_520.0))
    text = _pty_run(
        ["replay", trace, "--url", url, "--model", "m", "--speedup", "60"],
        until="use --max-idle to cap",
    )
    flat = " ".join(text.replace("\r", " ").split())
    assert "note: the trace has 3 h 11 min with no session under way" in flat
    assert "next session starts in 3 h" in flat and "of trace time; use --max-idle to cap" in flat
    assert "2/3" in flat and "67%" in flat and "rounds/s" in flat and "ETA 3 min" in flat


def test_input_errors_are_one_line(tmp_path: Path, url: str) -> None:
    def replay(source: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run("replay", source, "--url", url, "--model", "m", *extra)

    _one_error_line(replay(str(tmp_path / "none.jsonl")), "no such file")
    _one_error_line(replay(str(tmp_path)), "a directory")
    corrupt = tmp_path / "cut.jsonl.gz"
    corrupt.write_bytes(gzip.compress(FIXTURE.read_bytes())[:300])
    _one_error_line(replay(str(corrupt)), "cannot read it as a replay input")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n")
    _one_error_line(replay(str(garbage)), "cannot read it as a replay input")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _one_error_line(replay(str(empty)), "no rounds")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n")
    _one_error_line(replay(str(bad_csv)), "cannot read it as a replay input")
    _one_error_line(replay(str(FIXTURE), "--speedup", "0"), "--speedup")
    _one_error_line(replay(str(FIXTURE), "--max-idle", "-1"), "--max-idle")
    missing_store = tmp_path / "nope" / "x.db"
    _one_error_line(replay(f"sqlite:///{missing_store}"), "no such SQLite store")
    assert not missing_store.parent.exists()
    assert not (tmp_path / "replay-out").exists()  # nothing written for a mistake


def test_an_out_that_cannot_be_a_directory_is_one_line(tmp_path: Path, url: str) -> None:
    taken = tmp_path / "file"
    taken.write_text("x")
    res = run("replay", str(FIXTURE), "--url", url, "--model", "m", "--out", str(taken / "o"))
    _one_error_line(res, f"--out {taken / 'o'}")


@pytest.mark.parametrize("preflight", ["--preflight", "--no-preflight"])
def test_an_unreachable_server_is_one_line(tmp_path: Path, preflight: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    res = run("replay", str(FIXTURE), "--url", dead, "--model", "m", preflight)
    _one_error_line(res, f"cannot reach the server at {dead}")
    assert "--url" in res.stderr


def test_serve_sim_mistakes_are_one_line(url: str) -> None:
    _one_error_line(run("serve-sim", "--policy", "random"), "lru, fifo")
    _one_error_line(run("serve-sim", "--block-size", "0"), "--block-size")
    port = url.rsplit(":", 1)[1].split("/")[0]  # taken by the module's serve-sim
    _one_error_line(run("serve-sim", "--port", port), "pick another --port")


@pytest.mark.parametrize("command", ["replay", "serve-sim"])
def test_help_fits_80_columns(command: str) -> None:
    res = run(command, "--help")
    assert res.returncode == 0
    assert max(len(x) for x in res.stdout.splitlines()) <= 80 and "…" not in res.stdout
    if command == "serve-sim":
        assert "lru|fifo" in res.stdout
    else:
        assert "--url" in res.stdout and "--slo-ttft" in res.stdout
