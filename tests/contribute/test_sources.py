"""Where a contribution's rounds come from: a store recorded with content policy `full`
(the detector's findings are counted, nothing shared), a working directory under a scrubbed home
found again for its .tracetapignore, and the filters recorded in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.storage.rounds import SYSTEM, claude_session
from tracetap.cli import app
from tracetap.privacy.scrub import ContentPolicy
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.filters import Filter
from tracetap.storage.writer import Writer
from tracetap.tracelab import read_rows

runner = CliRunner()
KEY = "local-test-key-0123456789abcdef"
EMAIL = "dana.kowalski@globex.de"


def _store(tmp: Path, cwd: str, *, redact: bool) -> str:
    url = f"sqlite:///{tmp / 'db.sqlite'}"
    engine = make_engine(url)
    ensure_schema(engine)
    system = [
        SYSTEM[0],
        {"type": "text", "text": f"You are Claude Code.\nWorking directory: {cwd}\n"},
    ]
    rounds = claude_session(
        3, session="sess-local-000001", system=system, first_prompt=f"mail {EMAIL}"
    )
    rounds += claude_session(2, session="sess-local-000002", t0=1_780_100_000.0)
    if redact:
        policy = ContentPolicy("redacted", KEY.encode())
        rounds = [policy(r) for r in rounds]
    Writer(engine).write(rounds)
    engine.dispose()
    return url


def _contribute(url: str, out: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["contribute", "--db", url, "-o", str(out), *args], env={"TRACETAP_KEY": KEY}
    )
    return result.exit_code, result.output


def test_a_full_content_store_is_counted_by_the_detector_and_shares_no_text(
    tmp_path: Path,
) -> None:
    url = _store(tmp_path, "/srv/app", redact=False)
    code, output = _contribute(url, tmp_path / "ds", "--contributor", "dana")
    assert code == 0, output
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    census = manifest["census"]
    assert census["content_policies"] == {"full": 5}
    assert {"type": "email", "label": "email", "distinct": 1} in census["unscrubbed"]
    data = b"".join(p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file())
    assert EMAIL.encode() not in data and b"kowalski" not in data
    assert (
        "The detector still finds these in the recorded text"
        in (tmp_path / "ds" / "REVIEW.md").read_text()
    )


def test_an_ignore_file_under_a_scrubbed_home_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home" / "dana"  # the scrubber turns /home/dana into /home/user-HASH
    project = home / "src" / "diary"
    project.mkdir(parents=True)
    (project / ".tracetapignore").write_text("")
    monkeypatch.setenv("HOME", str(home))
    url = _store(tmp_path, str(project), redact=True)
    code, output = _contribute(url, tmp_path / "ds", "--workspace", str(tmp_path / "elsewhere"))
    assert code == 0, output
    assert f"excluded project diary: .tracetapignore in {project}" in output
    rows = list(read_rows(tmp_path / "ds" / "tracelab" / "rounds.jsonl"))
    assert len(rows) == 2  # only the other session's rounds


def test_the_manifest_records_the_filters(tmp_path: Path) -> None:
    url = _store(tmp_path, "/srv/app", redact=False)
    args = [
        "--agent",
        "claude",
        "--since",
        "2026-05-28T00:00:00Z",
        "--session",
        "sess-local-000002",
    ]
    code, output = _contribute(url, tmp_path / "ds", *args)
    assert code == 0, output
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    expected = Filter(
        since=1_779_926_400.0, agents=("claude",), sessions=("sess-local-000002",)
    ).as_dict()
    assert manifest["filters"] == expected
    assert manifest["rows"]["rounds"] == 2 and manifest["rows"]["sessions"] == 1
    assert "agent claude" in (tmp_path / "ds" / "REVIEW.md").read_text()
