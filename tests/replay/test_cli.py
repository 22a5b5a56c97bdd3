"""The `replay` and `serve-sim` commands end to end: serve-sim in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from tracetap.cli import app
from tracetap.tracelab import write_rows

from .simserver import free_port
from .traces import session_rows


def _serve_sim(port: int, *args: str) -> subprocess.Popen:
    """`tracetap serve-sim` in its own process, answering /health."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "tracetap"), "serve-sim", "--port", str(port), *args],
        stderr=subprocess.PIPE,
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"serve-sim did not start: {proc.stderr.read1()!r}")


def _trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.jsonl"
    with path.open("w") as fh:
        write_rows(
            session_rows("a", 0.0, [(0, 64, 4), (68, 20, 4)], gap=0.5)
            + session_rows("b", 0.2, [(0, 40, 2)]),
            fh,
        )
    return path


def test_replay_against_serve_sim_process(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve_sim(port, "--block-size", "16", "--decode-ms", "1")
    try:
        out = tmp_path / "out"
        result = CliRunner().invoke(
            app,
            [
                "replay",
                str(_trace(tmp_path)),
                "--base-url",
                f"http://127.0.0.1:{port}/v1",
                "--model",
                "m",
                "--speedup",
                "10",
                "--out",
                str(out),
                "--slo-ttft",
                "500",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "3 ok / 3 sent / 3 planned" in result.output
        summary = json.loads((out / "summary.json").read_text())
        rounds = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
        assert len(rounds) == 3 and summary["goodput"]["requests_meeting_slo"] == 3
        r1 = next(r for r in rounds if r["session_id"] == "a" and r["round_index"] == 1)
        # The recorded prefix (68) covers round 0's prompt and output; whole blocks hit.
        assert r1["reusable_prefix"] == 68 and r1["server_cached_tokens"] == 64
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["requests"] == 5  # 2 preflight + 3 rounds
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_replay_without_slos_claims_no_goodput(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve_sim(port, "--block-size", "16")
    try:
        args = ["replay", str(_trace(tmp_path)), "--base-url", f"http://127.0.0.1:{port}/v1"]
        args += ["--model", "m", "--speedup", "10", "--out", str(tmp_path / "out")]
        plain = CliRunner().invoke(app, args)
        with_slo = CliRunner().invoke(app, [*args, "--slo-ttft", "500"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert plain.exit_code == 0, plain.output
    assert "3 ok / 3 sent" in plain.output and "met the SLO" not in plain.output
    assert "goodput: not measured, no SLO given" in plain.output
    assert with_slo.exit_code == 0 and "3 requests met the SLOs" in with_slo.output


def test_replay_reports_a_down_server(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "replay",
            str(_trace(tmp_path)),
            "--base-url",
            f"http://127.0.0.1:{free_port()}/v1",
            "--model",
            "m",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot reach the server")
    assert len(result.output.strip().splitlines()) == 1


def test_bad_inputs_are_parameter_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "replay",
            str(tmp_path / "none.jsonl"),
            "--base-url",
            "http://127.0.0.1:1/v1",
            "--model",
            "m",
        ],
    )
    assert result.exit_code == 2 and "no such file" in result.output
    result = CliRunner().invoke(app, ["serve-sim", "--policy", "random"])
    assert result.exit_code == 2


def test_help_has_examples() -> None:
    for cmd in ("replay", "serve-sim"):
        result = CliRunner().invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output


def test_sigterm_keeps_results_and_writes_the_summary(tmp_path: Path) -> None:
    port = free_port()
    exe = str(Path(sys.executable).parent / "tracetap")
    server = _serve_sim(port)
    out = tmp_path / "out"
    try:
        trace = tmp_path / "slow.jsonl"
        with trace.open("w") as fh:  # 60 s between rounds: the run is stopped in the first gap
            write_rows(session_rows("a", 0.0, [(0, 64, 4), (68, 20, 4)], gap=60.0), fh)
        replay = subprocess.Popen(
            [
                exe,
                "replay",
                str(trace),
                "--base-url",
                f"http://127.0.0.1:{port}/v1",
                "--model",
                "m",
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        rounds = out / "rounds.jsonl"
        for _ in range(100):
            if rounds.exists() and rounds.read_text().strip():
                break
            time.sleep(0.1)
        replay.terminate()
        stdout, stderr = replay.communicate(timeout=20)
        assert replay.returncode == 1
        assert b"stopped early: interrupted" in stderr and b"never retrieved" not in stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["rounds_ok"] == 1 and summary["aborted"] == "interrupted"
    finally:
        server.terminate()
        server.wait(timeout=10)
