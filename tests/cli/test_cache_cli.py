"""`tracetap cache` run as a user runs it (the installed command, COLUMNS=80): imported TraceLab
rows shown from their prefix_tokens, proxy-recorded rounds beside tracetap's measurement,
the shared filters, and one-line errors."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tokens.test_fidelity import _anthropic, _session, _store, _tokens

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tracelab_sample.jsonl"
EXE = str(Path(sys.executable).parent / "tracetap")


def run(*args: str, db: str | None = None, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRACETAP_DB"}
    env["COLUMNS"] = str(columns)
    if db is not None:
        env["TRACETAP_DB"] = db
    return subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding the TraceLab sample, imported by `tracetap import tracelab`."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cache') / 'store.db'}"
    res = run("import", "tracelab", str(FIXTURE), db=url)
    assert res.returncode == 0, res.stderr
    return url


def _fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def _one_error_line(res: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert res.returncode == code, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_imported_tracelab_rows_show_their_prefix_tokens(imported: str) -> None:
    rows = _fixture_rows()
    res = run("cache", "--all", db=imported)
    assert res.returncode == 0, res.stderr
    words = " ".join(res.stdout.split())
    assert "from imported TraceLab prefix_tokens" in words and "estimated by" not in words
    for provider in ("claude", "codex"):
        mine = [r for r in rows if r["provider"] == provider]
        ratio = sum(r["prefix_tokens"] for r in mine) / sum(r["input_tokens_total"] for r in mine)
        total = sum(r["input_tokens_total"] for r in mine)
        line = next(x for x in res.stdout.splitlines() if x.startswith(f"│ {provider}:"))
        assert f"{total:,}" in line and f"{ratio:.0%}" in line, line
    everything = sum(r["prefix_tokens"] for r in rows) / sum(r["input_tokens_total"] for r in rows)
    assert f"prefix hit ratio (token-weighted): {everything:.1%}" in res.stdout


def test_one_imported_session_lists_every_round(imported: str) -> None:
    claude = [r for r in _fixture_rows() if r["provider"] == "claude"]
    res = run("cache", claude[0]["session_id"], db=imported)
    assert res.returncode == 0, res.stderr
    words = " ".join(res.stdout.split())
    assert "from imported TraceLab prefix_tokens" in words and "did not tokenize" in words
    for r in claude:
        line = next(x for x in res.stdout.splitlines() if x.startswith(f"│ {r['round_index']} "))
        for value in (r["input_tokens_total"], r["prefix_tokens"], r["newly_append_tokens"]):
            assert f"{value:,}" in line, line


def test_json_lines_carry_the_rows_prefix_tokens(imported: str) -> None:
    rows = _fixture_rows()
    res = run("cache", "--all", "--json", db=imported)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["type"] for x in lines] == ["round"] * len(rows) + ["summary"]
    assert {x["source"] for x in lines[:-1]} == {"imported TraceLab prefix_tokens"}
    assert sorted(x["prefix_tokens"] for x in lines[:-1]) == sorted(
        r["prefix_tokens"] for r in rows
    )
    assert all(x["reason"] is None and x["agree"] is None for x in lines[:-1])  # not compared
    summary = lines[-1]
    assert summary["prefix_tokens"] == sum(r["prefix_tokens"] for r in rows)
    assert summary["compared_rounds"] == 0 and summary["unmeasured_rounds"] == 0
    assert summary["sources"] == {"imported TraceLab prefix_tokens": len(rows)}


def test_filters_narrow_the_sessions(imported: str) -> None:
    rows = _fixture_rows()
    codex = run("cache", "--agent", "codex", db=imported)
    assert codex.returncode == 0, codex.stderr
    assert "codex:" in codex.stdout and "claude:" not in codex.stdout
    model = rows[0]["model"][:5]
    by_model = run("cache", "--all", "--json", "--model", model, db=imported)
    got = [json.loads(x) for x in by_model.stdout.splitlines()][:-1]
    assert got and all(x["model"].startswith(model) for x in got)
    assert len(got) == sum(r["model"].startswith(model) for r in rows)
    sid = next(r["session_id"] for r in rows if r["provider"] == "claude")
    by_session = run("cache", "--all", "--session", sid.split(":")[1][:8], db=imported)
    assert sid[:20] in by_session.stdout and "codex:" not in by_session.stdout
    _one_error_line(run("cache", "--all", "--since", "2100-01-01", db=imported), 1, "matches")
    _one_error_line(run("cache", sid, "--until", "2000-01-01", db=imported), 1, "matches")
    _one_error_line(run("cache", "--all", "--agent", "gemini", db=imported), 2, "gemini")


def test_errors_are_one_line(tmp_path: Path, imported: str) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a SQLite file without tracetap's schema
    for args in (["--all"], ["abc"]):
        _one_error_line(run("cache", *args, db=f"sqlite:///{empty}"), 1, "no recordings yet")
    missing = tmp_path / "nope" / "x.db"
    res = run("cache", "--all", "--db", f"sqlite:///{missing}")
    _one_error_line(res, 2, "no such SQLite store")
    assert not missing.parent.exists()
    _one_error_line(run("cache", db=imported), 2, "give a SESSION")
    _one_error_line(run("cache", "zzz-no-such", db=imported), 1, "no session matches")


def test_recorded_rounds_keep_every_number_at_80_columns(tmp_path: Path) -> None:
    rs = _session(3)
    rs[0].usage = _anthropic(read=0, uncached=10, write=259_240)
    rs[0].annotations["tokens"] = _tokens(259_250, 0, gap=None, breakpoints=[259_240])
    rs[1].usage = _anthropic(read=259_250, uncached=10, write=1_990)
    rs[1].annotations["tokens"] = _tokens(
        261_250, 259_250, parent=rs[0].uid, breakpoints=[200_000, 261_240]
    )
    rs[2].usage = _anthropic(read=0, uncached=10, write=263_240)
    rs[2].annotations["tokens"] = _tokens(263_250, 261_250, parent=rs[1].uid, gap=1200.0)
    url = _store(tmp_path, rs)
    res = run("cache", "claude:sess-1", db=url)
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout
    assert max(len(x) for x in res.stdout.splitlines()) <= 80
    for number in ("259,250 (99%)", "261,250 (99%)", "263,250"):
        assert number in res.stdout, number
    assert "left out at this width" in res.stdout and "ttl-expiry: 1" in res.stdout
    wide = run("cache", "claude:sess-1", "--db", url, columns=200)
    assert "200,000, 261,240" in wide.stdout and "1,990/0" in wide.stdout
    assert "left out" not in wide.stdout
    summary = run("cache", "--all", db=url)
    words = " ".join(summary.stdout.split())
    assert summary.returncode == 0 and "from tracetap's tokenizer" in words
    assert "2/3" in summary.stdout and "…" not in summary.stdout


def test_help_fits_80_columns() -> None:
    res = run("cache", "--help")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert max(len(x) for x in lines) <= 80 and "…" not in res.stdout
    for option in ("--since", "--until", "--agent", "--model", "--project", "--session"):
        assert option in res.stdout


def test_a_store_with_both_sources_names_each(tmp_path: Path) -> None:
    rs = _session(2)
    rs[0].usage = _anthropic(read=0, uncached=10, write=9990)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None)
    rs[1].usage = _anthropic(read=10_000, uncached=10, write=990)
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid)
    url = _store(tmp_path, rs)
    assert run("import", "tracelab", str(FIXTURE), db=url).returncode == 0
    res = run("cache", "--all", db=url)
    assert res.returncode == 0, res.stderr
    words = " ".join(res.stdout.split())
    assert "from imported TraceLab prefix_tokens and tracetap's tokenizer" in words
    recorded = next(x for x in res.stdout.splitlines() if x.startswith("│ claude:sess-1 "))
    assert "2/2" in recorded and recorded.rstrip(" │").endswith("tokenizer")
    imported = [x for x in res.stdout.splitlines() if x.rstrip(" │").endswith("imported")]
    assert len(imported) == 2 and all(" - " in x for x in imported)  # nothing measured
    assert max(len(x) for x in res.stdout.splitlines()) <= 80
