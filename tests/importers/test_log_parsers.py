"""Claude Code and Codex log parsers on small realistic logs with hand-computed rows."""

from __future__ import annotations

import json
from pathlib import Path

from tracetap.importers import claude_code, codex
from tracetap.importers.logrows import Unreadable
from tracetap.importers.sniff import looks_like
from tracetap.tracelab import check_row

DATA = Path(__file__).parent / "data"
CLAUDE_SID = "claude:5f0c2a7e-1b3d-4c8e-9a61-7d2e4f8b0c11"


def _claude() -> list[dict]:
    return list(claude_code.rows_from_dir(DATA / "claude_session.jsonl"))


def _codex() -> list[dict]:
    return list(codex.rows_from_dir(DATA / "codex_rollout.jsonl"))


def test_claude_rounds_are_assistant_messages_with_usage_and_inputs() -> None:
    rows = [r for r in _claude() if r["session_id"] == CLAUDE_SID]
    assert [r["round_id"] for r in rows] == ["msg_01A", "msg_01B", "msg_01C"]  # no synthetic
    assert [r["round_index"] for r in rows] == [0, 1, 2]
    r0, r1, r2 = rows
    assert (r0["input_tokens_total"], r0["prefix_tokens"], r0["newly_append_tokens"]) == (
        3 + 1200 + 15000,
        15000,
        1203,
    )
    assert r0["output_tokens"] == 87  # the message's final usage, not its first line's
    assert r0["claude_cache_creation_input_tokens"] == 1200
    assert r0["reasoning_output_tokens"] is None
    assert [e["event_type"] for e in r0["timing_events"]] == [
        "user_message",
        "reasoning",
        "text",
        "tool_call",
    ]
    assert r0["current_user_message_chars"] == len("Fix the failing test in utils")
    assert r0["first_input_event_type"] == "user_message"
    bash = r0["tools"][0]
    assert bash["tool_wall_latency_ms"] == 2250 and bash["result_chars"] == 18
    assert bash["input"] == '{"command":"pytest tests/test_utils.py","description":"Run tests"}'
    assert bash["input_chars"] == len(bash["input"])
    read, grep = r1["tools"]
    assert (read["tool_wall_latency_ms"], read["result_chars"]) == (600, 27)
    assert (grep["tool_wall_latency_ms"], grep["tool_internal_latency_ms"], grep["is_error"]) == (
        500,
        35,
        True,
    )
    assert r1["current_tool_result_count"] == 1 and r1["first_input_event_type"] == "tool_result"
    assert r2["current_tool_result_count"] == 2 and r2["current_tool_result_chars"] == 27 + 12
    assert r2["current_input_event_count"] == 2
    for r in rows:
        assert check_row(r) == []
        assert r["store"] == "tracetap-import:claude-code" and r["tt_source"] == "log"
        assert r["project"] == "webapp" and "cwd" not in r
        assert r["trace_key"] == f"claude:{CLAUDE_SID}:{r['round_id']}"


def test_claude_sidechain_lines_form_a_subagent_session() -> None:
    side = [r for r in _claude() if r["session_id"] != CLAUDE_SID]
    assert len(side) == 1
    assert side[0]["session_id"] == CLAUDE_SID + ":sidechain"
    assert side[0]["tt_kind"] == "subagent" and side[0]["model"] == "claude-haiku-4-5"
    assert side[0]["input_tokens_total"] == 3010


def test_codex_rounds_end_at_new_token_counts() -> None:
    rows = _codex()
    assert [r["round_id"] for r in rows] == ["turn-1:0", "turn-1:1", "turn-2:0"]
    assert [r["turn_id"] for r in rows] == ["turn-1", "turn-1", "turn-2"]
    r0, r1, r2 = rows
    assert (
        r0["input_tokens_total"],
        r0["prefix_tokens"],
        r0["newly_append_tokens"],
        r0["output_tokens"],
        r0["reasoning_output_tokens"],
    ) == (5000, 4096, 904, 60, 20)
    assert r0["claude_uncached_input_tokens"] is None
    assert [e["event_type"] for e in r0["timing_events"]] == [
        "user_message",
        "reasoning",
        "tool_call",
        "usage_report",
    ]
    assert r0["current_user_message_chars"] == len("List the files")
    ls = r0["tools"][0]
    assert (
        ls["tool_name"],
        ls["tool_wall_latency_ms"],
        ls["tool_internal_latency_ms"],
        ls["is_error"],
    ) == ("exec_command", 500, 12, False)
    assert ls["input"] == '{"cmd":"ls"}'
    # the repeated token_count (same totals, no new output) made no extra round
    assert r1["current_tool_result_count"] == 1 and r1["output_tokens"] == 30
    assert r1["first_input_event_type"] == "tool_result"
    patch = r2["tools"][0]
    assert (
        patch["tool_name"],
        patch["tool_wall_latency_ms"],
        patch["tool_internal_latency_ms"],
        patch["is_error"],
        patch["result_chars"],
    ) == ("apply_patch", 300, 200, True, 8)
    assert r2["model"] == "gpt-5-codex" and r2["project"] == "api"
    for r in rows:
        assert check_row(r) == []
        assert r["store"] == "tracetap-import:codex" and r["tt_source"] == "log"


def test_directories_are_walked_and_torn_lines_skipped(tmp_path: Path) -> None:
    nested = tmp_path / "2026" / "05" / "02"
    nested.mkdir(parents=True)
    (nested / "rollout-a.jsonl").write_bytes((DATA / "codex_rollout.jsonl").read_bytes())
    (nested / "notes.txt").write_text("not a log")
    (tmp_path / "empty.jsonl").write_text("{broken\n")
    unreadable, read = Unreadable(), []
    rows = list(codex.rows_from_dir(tmp_path, unreadable=unreadable, on_file=read.append))
    assert len(rows) == 3
    assert read == [nested / "rollout-a.jsonl", tmp_path / "empty.jsonl"]
    # the sample rollout ends in a torn line (18) and empty.jsonl holds a broken one
    assert unreadable.describe() == f"skipped 2 unreadable lines (first at line 18 of {read[0]})"


def test_each_subagent_file_is_its_own_session(tmp_path: Path) -> None:
    lines = [json.loads(x) for x in (DATA / "claude_session.jsonl").read_text().splitlines()]
    side = [x for x in lines if x.get("isSidechain")]
    sub = tmp_path / "proj" / "5f0c" / "subagents"
    sub.mkdir(parents=True)
    for agent in ("a1", "b2"):
        (sub / f"agent-{agent}.jsonl").write_text(
            "".join(json.dumps(dict(x, agentId=agent)) + "\n" for x in side)
        )
    rows = list(claude_code.rows_from_dir(tmp_path))
    assert [r["session_id"] for r in rows] == [CLAUDE_SID + ":agent-a1", CLAUDE_SID + ":agent-b2"]
    assert all(r["tt_kind"] == "subagent" and r["round_index"] == 0 for r in rows)


def test_sniffing_tells_the_three_inputs_apart(tmp_path: Path) -> None:
    fixture = DATA.parent.parent / "fixtures" / "tracelab_sample.jsonl"
    assert looks_like(DATA / "claude_session.jsonl") == "claude-code"
    assert looks_like(DATA / "codex_rollout.jsonl") == "codex"
    assert looks_like(fixture) == "tracelab"
    (tmp_path / "notes.jsonl").write_text('{"a": 1}\nnot json\n')
    assert looks_like(tmp_path) is None and looks_like(tmp_path / "missing") is None
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "rollout.jsonl").write_bytes((DATA / "codex_rollout.jsonl").read_bytes())
    assert looks_like(tmp_path) == "codex"
