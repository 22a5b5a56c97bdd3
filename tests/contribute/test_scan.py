"""The second scan on hand-made files: each rule says where it hit (file, row, field), never
the value, and clean TraceLab rows pass."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracetap.contribute.scan import Scanner
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tracelab_sample.jsonl"


def _rules(hits: list) -> set[tuple[int, str, str]]:
    return {(h.row, h.field, h.rule) for h in hits}


def test_tracelabs_own_public_rows_pass(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_bytes(FIXTURE.read_bytes())
    assert Scanner().folder(tmp_path) == []


def test_each_rule_names_file_row_and_field(tmp_path: Path) -> None:
    rows = list(read_rows(FIXTURE))[:4]
    rows[0]["tools"][0]["input"] = '{"command": "ls"}'  # a tool input in a public row
    rows[1]["cwd"] = "x"  # a path-like key
    rows[2]["model"] = "ft:gpt-4o:dana.kowalski@globex.de"  # the detector's e-mail
    rows[3]["timing_events"][0]["source"] = "/Users/dana/src/secret-app/main.py"
    rows[3]["project"] = "billing-service"  # not a pseudonym, and a recorded name
    with (tmp_path / "rows.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    hits = Scanner(names={"billing-service"}).folder(tmp_path)
    found = _rules(hits)
    assert (1, "tools[0].input", "gate:tool-input-in-a-public-row") in found
    assert (2, "cwd", "gate:private-key") in found
    assert (3, "model", "detector:email") in found and (3, "model", "gate:at-sign") in found
    assert (4, "timing_events[0].source", "gate:absolute-path") in found
    assert (4, "timing_events[0].source", "detector:home") in found
    assert (4, "project", "gate:not-a-pseudonym") in found
    assert (4, "project", "recorded-name") in found
    assert {h.file for h in hits} == {"rows.jsonl"}
    text = json.dumps([h.as_dict() for h in hits])
    assert "globex" not in text and "billing" not in text and "dana" not in text


def test_parquet_values_are_read_back_and_null_private_columns_pass(tmp_path: Path) -> None:
    table = pa.table(
        {
            "home": pa.array([None, None], type=pa.string()),
            "session_file": pa.array([None, "/home/dana/.claude/x.jsonl"], type=pa.string()),
            "tool_name": pa.array(["Bash", "mcp__sess-0123456789ab__run"], type=pa.string()),
        }
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "t.parquet", compression="zstd")
    hits = Scanner(identifiers={"sess-0123456789ab"}).folder(tmp_path)
    found = _rules(hits)
    assert (0, "session_file", "gate:private-key") in found
    assert not any(f == "home" for _, f, _ in found)
    assert (2, "session_file", "gate:absolute-path") in found
    assert (2, "tool_name", "recorded-name") not in found  # an id matches whole tokens only
    hits = Scanner(names={"sess-0123456789ab"}).folder(tmp_path)
    assert (2, "tool_name", "recorded-name") in _rules(hits)
    assert {h.file for h in hits} == {"data/t.parquet"}
