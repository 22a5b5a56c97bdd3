"""`tracetap export FORMAT --input FILE` for every format, with the shared filters."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from tests.exporters.handmade import FIXTURE, two_sessions
from tracetap.cli import app
from tracetap.tracelab import write_rows

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, ["export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_format_from_the_fixture(tmp_path: Path) -> None:
    _run("tracelab-duckdb", "-i", str(FIXTURE), "-o", str(tmp_path / "t.duckdb"))
    con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM rounds").fetchone() == (19,)
    assert con.execute("SELECT path FROM trace_source").fetchone() == (str(FIXTURE),)
    _run("replay-csv", "-i", str(FIXTURE), "-o", str(tmp_path / "r.csv"))
    assert len(list(csv.DictReader((tmp_path / "r.csv").open()))) == 19
    _run("mooncake", "-i", str(FIXTURE), "-o", str(tmp_path / "m.jsonl"))
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 19
    _run("atif", "-i", str(FIXTURE), "-o", str(tmp_path / "a.jsonl"))
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 2
    _run("otel", "-i", str(FIXTURE), "-o", str(tmp_path / "o.json"))
    spans = json.loads((tmp_path / "o.json").read_text().splitlines()[0])
    assert spans["resourceSpans"][0]["scopeSpans"][0]["spans"]
    _run("parquet", "-i", str(FIXTURE), "-o", str(tmp_path / "pq"))
    assert (tmp_path / "pq" / "rounds" / "day=2026-06-01").is_dir()


def test_filters_apply_to_file_input(tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    with src.open("w") as fh:
        write_rows(two_sessions(), fh)
    out = _run("replay-csv", "-i", str(src), "--session", "s2")
    assert [line.split(",")[0] for line in out.splitlines()[1:] if line.startswith("claude")] == [
        "claude:s2",
        "claude:s2",
    ]
    out = _run("mooncake", "-i", str(FIXTURE), "--agent", "codex")
    assert len([line for line in out.splitlines() if line.startswith("{")]) == 9
    out = _run("mooncake", "-i", str(FIXTURE), "--since", "2026-05-01T00:00:00Z")
    assert len([line for line in out.splitlines() if line.startswith("{")]) == 10


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "mooncake", "-i", str(FIXTURE), "--block-size", "0"])
    assert result.exit_code != 0 and "block-size" in result.output
    result = runner.invoke(app, ["export", "replay-csv", "-i", str(FIXTURE), "--waits", "x"])
    assert result.exit_code != 0 and "--waits" in result.output
    result = runner.invoke(
        app, ["export", "otel", "-i", str(FIXTURE), "--endpoint", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2 and "cannot send to http://127.0.0.1:9" in result.output
