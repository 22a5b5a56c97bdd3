"""`tracetap export tracelab`: rows as the contract says, and the public (sanitized) form."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tracetap.exporters.public import Pseudonymizer, privacy_problems, sanitize_row
from tracetap.importers.tracelab import import_rows
from tracetap.privacy.keys import load_key
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"


def _export(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "tracetap", "export", "tracelab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "team.key"
    load_key(path)
    return path


def test_fixture_round_trips_through_the_store(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'rt.db'}"
    rows = list(read_rows(FIXTURE))
    assert import_rows(db, rows, source="tracelab") == len(rows)
    assert import_rows(db, rows, source="tracelab") == 0  # idempotent
    out = tmp_path / "out.jsonl.gz"
    proc = _export("--db", db, "--kind", "all", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    got = {r["trace_key"]: r for r in read_rows(out)}
    assert got == {r["trace_key"]: r for r in rows}  # field by field


def test_public_rows_pass_the_privacy_rule_and_keep_relations(
    tmp_path: Path, key_file: Path
) -> None:
    private = [dict(r) for r in read_rows(FIXTURE)]
    private[0]["cwd"] = "/home/alice/secret-project"
    private[0]["tools"][0]["input"] = json.dumps({"command": "cat /home/alice/.env"})
    src = tmp_path / "private.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in private))
    out = tmp_path / "public.jsonl"
    proc = _export("--input", str(src), "--public", "--key-file", str(key_file), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    public = list(read_rows(out))
    assert len(public) == len(private)
    text = out.read_text()
    assert "alice" not in text and "secret-project" not in text
    for row in public:
        assert privacy_problems(row) == []
    originals = {t["tool_call_id"] for r in private for t in r["tools"]}
    assert not originals & {t["tool_call_id"] for r in public for t in r["tools"]}
    for before, after in zip(private, public):
        assert after["input_tokens_total"] == before["input_tokens_total"]
        assert (
            after["trace_key"] == f"{after['provider']}:{after['session_id']}:{after['round_id']}"
        )
        assert len(after["round_id"]) == len(before["round_id"])
        assert after["session_id"].split(":")[0] == before["session_id"].split(":")[0]
        # tool calls and their results (in the next round's events) still match up
        emitted = [t["tool_call_id"] for t in after["tools"]]
        events = [
            e["tool_call_id"] for e in after["timing_events"] if e["event_type"] == "tool_call"
        ]
        assert emitted == events
    by_session: dict[str, list] = {}
    for r in public:
        by_session.setdefault(r["session_id"], []).append(r)
    for rows in by_session.values():
        calls = {t["tool_call_id"] for r in rows for t in r["tools"]}
        results = {
            e["tool_call_id"]
            for r in rows
            for e in r["timing_events"]
            if e["event_type"] == "tool_result"
        }
        assert results and results <= calls


def test_pseudonyms_are_stable_per_key_and_keep_shape(tmp_path: Path) -> None:
    a, b = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    for value in (
        "msg_3e0cf83dc2523801f59077fd",
        "toolu_2a5ccaf03cb1cdbd5fe2bf",
        "call_TNKdeGZEKVcjCBzY90Itpufn",
        "92ee5b8a-429c-e80b-5db6-5381512f4697",
    ):
        x = a(value)
        assert x == Pseudonymizer(b"k" * 32)(value) and x != b(value) and x != value
        assert len(x) == len(value)
        if "_" in value:
            assert x.split("_")[0] == value.split("_")[0]
        assert [c for c in x if not c.isalnum()] == [c for c in value if not c.isalnum()]
    row = next(read_rows(FIXTURE))
    assert sanitize_row(row, a)["session_id"] == sanitize_row(row, a)["session_id"]


def test_key_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "k" / "pseudonym.key"
    key = load_key(path)
    assert len(key) >= 32 and load_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    proc = _export("--input", str(tmp_path / "missing.jsonl"))
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(FIXTURE.read_text().splitlines()[0] + "\n{not json\n")
    proc = _export("--input", str(bad), "-o", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 2 and "bad.jsonl:2: not JSON" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # no partial output
    proc = _export("--input", str(FIXTURE), "--since", "yesterday")
    assert proc.returncode != 0 and "not an ISO-8601 time" in proc.stderr
