"""`tracetap import claude-code|codex|tracelab` into a SQLite store, read back by export."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.exporters.handmade import FIXTURE
from tracetap.cli import app
from tracetap.exporters.public import privacy_problems
from tracetap.importers import claude_code, codex
from tracetap.tracelab import ROW_FIELDS, read_rows, write_rows

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def _export(db: str, tmp_path: Path) -> list[dict]:
    out = tmp_path / "back.jsonl"
    result = runner.invoke(
        app, ["export", "tracelab", "--db", db, "--kind", "all", "--extended", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return list(read_rows(out))


def test_log_imports_round_trip_through_the_store(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    for source, path in (("claude-code", DATA / "claude_session.jsonl"), ("codex", DATA)):
        result = runner.invoke(app, ["import", source, str(path), "--db", db])
        assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["import", "codex", str(DATA), "--db", db])
    assert "imported 0 new rounds" in again.output  # idempotent
    expected = list(claude_code.rows_from_dir(DATA / "claude_session.jsonl")) + list(
        codex.rows_from_dir(DATA)
    )
    back = {r["trace_key"]: r for r in _export(db, tmp_path)}
    assert set(back) == {r["trace_key"] for r in expected}
    for want in expected:
        got = back[want["trace_key"]]
        for field in ROW_FIELDS:
            assert got.get(field) == want.get(field), (want["trace_key"], field)
        assert got["tt_kind"] == want["tt_kind"]


def test_tracelab_file_import_round_trips_the_fixture(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = runner.invoke(app, ["import", "tracelab", str(FIXTURE), "--db", db])
    assert result.exit_code == 0, result.output
    assert "imported 19 new rounds" in result.output
    back = {r["trace_key"]: r for r in _export(db, tmp_path)}
    for want in read_rows(FIXTURE):
        got = back[want["trace_key"]]
        assert {k: got.get(k) for k in want} == want


def test_missing_history_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["import", "codex", str(tmp_path / "nope"), "--db", f"sqlite:///{tmp_path / 's.db'}"]
    )
    assert result.exit_code != 0
    assert "does not exist" in " ".join(result.output.replace("│", " ").split())


def test_public_export_of_log_rows_holds_no_private_strings(tmp_path: Path) -> None:
    src = tmp_path / "private.jsonl"
    with src.open("w") as fh:
        write_rows(
            list(claude_code.rows_from_dir(DATA / "claude_session.jsonl"))
            + list(codex.rows_from_dir(DATA)),
            fh,
        )
    key = tmp_path / "k.key"
    key.write_text("ab" * 32)
    out = tmp_path / "public.jsonl"
    result = runner.invoke(
        app,
        [
            "export",
            "tracelab",
            "-i",
            str(src),
            "--kind",
            "all",
            "--public",
            "--key-file",
            str(key),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    private = [
        "alice",
        "/home",
        "webapp",
        "pytest",
        "def parse",
        "Begin Patch",
        '"cmd"',
        "5f0c2a7e-1b3d-4c8e-9a61-7d2e4f8b0c11",
        "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "toolu_01X",
        "call_abc123",
        "msg_01A",
        '"input"',
    ]
    assert [s for s in private if s in text] == []
    public = list(read_rows(out))
    for row in public:
        assert privacy_problems(row) == []
    assert len(public) == 7
