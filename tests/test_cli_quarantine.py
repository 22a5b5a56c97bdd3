"""`tracetap db quarantine` lists what the writer quarantined and retries it; `db check` and
`db upgrade` take a store from 0002 to the schema with the quarantine."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.storage.rounds import claude_session
from tracetap.cli import app
from tracetap.storage.db import ensure_schema, make_engine, upgrade
from tracetap.storage.models import SCHEMA_VERSION
from tracetap.storage.writer import Writer

runner = CliRunner()


def _store(tmp_path: Path) -> tuple[str, list[str]]:
    """A store with one poison round quarantined among stored ones; (url, [poison uid])."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    rounds = claude_session(3)
    rounds[1].usage.output_tokens = 2**63
    assert Writer(engine).write(rounds) == 2
    engine.dispose()
    return url, [rounds[1].uid]


def test_quarantine_lists_records_as_json_lines_and_a_table(tmp_path: Path) -> None:
    url, [uid] = _store(tmp_path)
    result = runner.invoke(app, ["db", "quarantine", "--json"], env={"TRACETAP_DB": url})
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()  # one JSON document a line
    entry = json.loads(line)
    assert (entry["uid"], entry["kind"], entry["resolved"], entry["kept"]) == (
        uid,
        "round",
        False,
        True,
    )
    assert entry["error"].startswith("PoisonError: usage.output_tokens = 9223372036854775808")
    assert entry["retried_at"] is None and entry["created_at"] > 0
    table = runner.invoke(app, ["db", "quarantine", "--db", url])
    assert table.exit_code == 0, table.output
    assert uid in table.output and "PoisonError" in table.output


def test_retry_keeps_a_record_that_is_still_poison(tmp_path: Path) -> None:
    url, [uid] = _store(tmp_path)
    result = runner.invoke(app, ["db", "quarantine", "--retry", "--json", "--db", url])
    assert result.exit_code == 0, result.output
    assert "0 stored and resolved, 1 still quarantined" in result.output
    [entry] = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert entry["uid"] == uid and not entry["resolved"] and entry["retried_at"] is not None
    assert "usage.output_tokens" in entry["error"]


def test_an_empty_quarantine_lists_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_schema(make_engine(url))
    result = runner.invoke(app, ["db", "quarantine", "--json", "--db", url])
    assert result.exit_code == 0 and result.output == ""


def test_db_check_and_upgrade_from_0002(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert runner.invoke(app, ["db", "upgrade", "--db", fresh]).exit_code == 0
    assert runner.invoke(app, ["db", "check", "--db", fresh]).exit_code == 0
    engine = make_engine(url)
    upgrade(engine, "0002_tokens")
    Writer(engine).write(claude_session(2))
    engine.dispose()
    old = runner.invoke(app, ["db", "check", "--db", url])
    assert old.exit_code == 2 and "0002_tokens" in old.output and "db upgrade" in old.output
    up = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert up.exit_code == 0 and f"0002_tokens -> {SCHEMA_VERSION}" in up.output
    assert runner.invoke(app, ["db", "check", "--db", url]).exit_code == 0
    listed = runner.invoke(app, ["db", "quarantine", "--json", "--db", url])
    assert listed.exit_code == 0 and listed.output == ""
