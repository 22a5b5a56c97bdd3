"""`tracetap analyze` on wrong input: one line, the right exit code, no traceback, no file made;
the shared filters on a store and on a JSONL file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracetap.cli import app
from tracetap.importers.tracelab import import_rows
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
CODEX_ROLLOUT = Path(__file__).parent.parent / "importers" / "data" / "codex_rollout.jsonl"
CLAUDE_LOG = Path(__file__).parent.parent / "importers" / "data" / "claude_session.jsonl"
runner = CliRunner()


def _fails(args: list[str], code: int, *needles: str) -> str:
    out = runner.invoke(app, args)
    text = out.output.strip()
    assert out.exit_code == code, text
    assert "Traceback" not in text and "Warning" not in text
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error: ")
    for needle in needles:
        assert needle in text
    return text


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_codex_rollout_says_to_import_it(tmp_path):
    before = _files(tmp_path)
    _fails(
        ["analyze", str(CODEX_ROLLOUT), "--html", str(tmp_path / "r.html")],
        2,
        "looks like a Codex rollout",
        "tracetap import codex",
    )
    assert _files(tmp_path) == before


def test_claude_code_log_says_to_import_it():
    _fails(["analyze", str(CLAUDE_LOG)], 2, "Claude Code log", "tracetap import claude-code")


def test_other_json_is_not_a_tracelab_row(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n')
    _fails(["analyze", str(path)], 2, "not a TraceLab row")
    path.write_text("not json\n")
    _fails(["analyze", str(path)], 2, "line 1 is not JSON")


def test_empty_file_has_no_rounds(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    _fails(["analyze", str(path), "--plots", str(tmp_path / "figs")], 1, f"no rounds in {path}")
    path.write_text("\n\n")
    _fails(["analyze", str(path)], 1, "no rounds in")
    assert not (tmp_path / "figs").exists()


def test_missing_file_is_a_mistake(tmp_path):
    _fails(["analyze", str(tmp_path / "missing.jsonl")], 2, "missing.jsonl: no such file")


@pytest.mark.parametrize("option", ["--html", "--plots"])
def test_unwritable_output_is_named_before_any_work(tmp_path, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "sub" / "out"
    _fails(["analyze", str(FIXTURE), option, str(target)], 2, option, str(target))
    assert _files(tmp_path) == {blocker}


def test_html_onto_a_folder_is_a_mistake(tmp_path):
    _fails(["analyze", str(FIXTURE), "--html", str(tmp_path)], 2, "--html", "is a folder")


def test_store_without_schema_says_no_recordings(tmp_path):
    path = tmp_path / "blank.db"
    sqlite3.connect(path).close()
    _fails(["analyze", f"sqlite:///{path}"], 1, "no recordings yet in", "tracetap proxy")
    # no report, no figures; SQLite's own -wal/-shm files are open_store's (cli/options.py)
    assert {p for p in _files(tmp_path) if not p.name.endswith(("-wal", "-shm"))} == {path}


def test_missing_store_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    _fails(["analyze", url], 2, "no such SQLite store")
    assert _files(tmp_path) == set()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'store.db'}"
    import_rows(url, read_rows(FIXTURE), source="tracelab")
    return url


@pytest.mark.parametrize("source", ["store", "jsonl"])
def test_filters_that_match_nothing_exit_1(store, source):
    src = store if source == "store" else str(FIXTURE)
    _fails(["analyze", src, "--agent", "openai"], 1, "nothing in", "matches agent openai")
    _fails(["analyze", src, "--until", "2020-01-01"], 1, "matches until 2020-01-01")


def test_bad_filter_value_is_a_mistake():
    _fails(["analyze", str(FIXTURE), "--since", "yesterday-ish"], 2, "--since")


@pytest.mark.parametrize("source", ["store", "jsonl"])
@pytest.mark.parametrize(
    ("args", "rounds"),
    [
        (["--agent", "codex"], 9),
        (["--agent", "claude"], 10),
        (["--model", "gpt"], 9),
        (["--since", "2026-06-01"], 10),
        (["--until", "2026-06-01"], 9),
        (["--session", "claude:"], 10),
        (["--agent", "claude", "--agent", "codex"], 19),
    ],
)
def test_filters_on_store_and_jsonl(store, source, args, rounds):
    src = store if source == "store" else str(FIXTURE)
    out = runner.invoke(app, ["analyze", src, "--json", "--only", "overview", *args])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["overview"]["all"]["llm_rounds_total"] == rounds
    assert data["_input"]["filter"] == _filter_dict(args)


def _filter_dict(args: list[str]) -> dict:
    out: dict = {}
    names = {"--agent": "agents", "--model": "models", "--session": "sessions"}
    for flag, value in zip(args[::2], args[1::2]):
        if flag in names:
            out.setdefault(names[flag], []).append(value)
        else:
            out[flag.lstrip("-")] = value + "T00:00:00+00:00"
    return out


def test_a_one_round_trace_prints_no_warnings(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(FIXTURE.read_text().splitlines()[0] + "\n")
    html = tmp_path / "one.html"
    out = runner.invoke(app, ["analyze", str(path), "--group-by", "session", "--html", str(html)])
    assert out.exit_code == 0, out.output
    assert "Warning" not in out.output and "warn" not in out.output.lower()
    assert html.is_file()


def test_filters_on_a_duckdb_file_say_what_to_do(tmp_path):
    from tests.analysis.test_inputs import _tracelab_duckdb

    db = tmp_path / "trace.duckdb"
    _tracelab_duckdb(db)
    _fails(["analyze", str(db), "--agent", "claude"], 2, "filters apply to TraceLab JSONL")
    out = runner.invoke(app, ["analyze", str(db), "--json", "--only", "overview"])
    assert (
        out.exit_code == 0 and json.loads(out.output)["overview"]["all"]["llm_rounds_total"] == 19
    )
