"""The real Claude Code and Codex CLIs run multi-round agent loops through `tracetap proxy`.

A scripted upstream asks for one tool call, then two parallel calls, then answers; the recorded
session must match what the upstream received and reported, field by field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.agents_cli import AgentCLIs, run_claude, run_codex
from tests.support.scripted import FINAL_TEXT, ScriptedUpstream
from tracetap.tracelab import check_row, parse_ts

pytestmark = pytest.mark.slow


def _cli(*args: str, db: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tracetap", *args, "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _export(db: str, tmp: Path) -> list[dict[str, Any]]:
    out = tmp / "export.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetap",
            "export",
            "tracelab",
            "--db",
            db,
            "-o",
            str(out),
            "--extended",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return [json.loads(line) for line in out.read_text().splitlines()]


def _run_claude_through(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    upstream: ScriptedUpstream,
    tracetap_proxy,
    prompt: str = "Create one.txt and two.txt.",
    **kw: Any,
) -> tuple[Any, Path, str]:
    """Claude Code through a fresh tracetap proxy: the stopped proxy, the workdir, stdout."""
    proxy = tracetap_proxy(anthropic_upstream=upstream.url)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_claude(agent_clis, proxy.anthropic_url, work, prompt, home=tmp_path / "home", **kw)
    assert proc.returncode == 0, proc.stderr
    assert proxy.stop() == 0  # SIGTERM: everything pending is flushed first
    return proxy, work, proc.stdout


def _check_common(rows: list[dict[str, Any]], main: list, provider: str) -> None:
    assert [r["provider"] for r in rows] == [provider] * 3
    assert [r["round_index"] for r in rows] == [0, 1, 2]
    assert [r["tt_kind"] for r in rows] == ["main"] * 3
    for row in rows:
        assert check_row(row) == []
        stamps = [parse_ts(e["timestamp"]) for e in row["timing_events"]]
        assert stamps == sorted(stamps)
        assert row["tt_ttft_ms"] >= 0 and row["tt_end_ms"] >= row["tt_ttft_ms"]
    starts = [parse_ts(r["tt_request_at"]) for r in rows]
    assert starts == sorted(starts)
    # every tool call of rounds 0 and 1 is paired with the result in the next request
    for i in (0, 1):
        for tool in rows[i]["tools"]:
            assert tool["result_at"] is not None, tool
            assert tool["tool_wall_latency_ms"] >= 0
            assert parse_ts(tool["result_at"]) == pytest.approx(starts[i + 1], abs=0.002)
            assert tool["result_chars"] > 0
        results = [
            e["tool_call_id"]
            for e in rows[i + 1]["timing_events"]
            if e["event_type"] == "tool_result"
        ]
        assert results == [t["tool_call_id"] for t in rows[i]["tools"]]
    assert rows[2]["tools"] == []
    assert rows[0]["first_input_event_type"] == "user_message"
    assert rows[1]["first_input_event_type"] == rows[2]["first_input_event_type"] == "tool_result"
    assert (rows[1]["current_tool_result_count"], rows[2]["current_tool_result_count"]) == (1, 2)
    # tool names, order and ids are what the upstream asked for
    for row, rec in zip(rows, main):
        assert [(t["tool_call_id"], t["tool_name"]) for t in row["tools"]] == [
            (cid, name) for cid, name, _ in rec.tool_calls
        ]


def test_claude_code_loop_is_recorded(
    tmp_path: Path, agent_clis: AgentCLIs, scripted_upstream: ScriptedUpstream, tracetap_proxy
) -> None:
    proxy, work, stdout = _run_claude_through(
        tmp_path, agent_clis, scripted_upstream, tracetap_proxy
    )
    assert FINAL_TEXT in stdout
    assert (work / "one.txt").read_text() == "one\n" and (work / "two.txt").exists()

    main = scripted_upstream.main_loop("/v1/messages")
    assert len(main) == 3
    session = main[0].headers["X-Claude-Code-Session-Id"]
    rows = [r for r in _export(proxy.db_url, tmp_path) if r["tt_kind"] == "main"]
    assert [r["session_id"] for r in rows] == [f"claude:{session}"] * 3
    assert {r["project"] for r in rows} == {"work"}  # from Claude Code's environment block
    _check_common(rows, main, "claude")
    assert [[t["tool_name"] for t in r["tools"]] for r in rows] == [["Bash"], ["Bash", "Read"], []]
    for row, rec in zip(rows, main):
        u = rec.usage
        assert row["claude_uncached_input_tokens"] == u["input_tokens"]
        assert row["claude_cache_creation_input_tokens"] == u["cache_creation_input_tokens"]
        assert row["claude_cache_read_input_tokens"] == u["cache_read_input_tokens"]
        assert row["prefix_tokens"] == u["cache_read_input_tokens"]
        assert row["input_tokens_total"] == (
            u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
        )
        assert row["output_tokens"] == u["output_tokens"]
        assert row["tt_cache_creation_5m_tokens"] == u["cache_creation_input_tokens"]
        assert row["round_id"].startswith("msg_") and row["model"] == rec.body["model"]
    # the first round's output events: thinking, text, one tool call, in stream order
    assert [e["event_type"] for e in rows[0]["timing_events"]] == [
        "user_message",
        "reasoning",
        "text",
        "tool_call",
    ]
    assert json.loads(rows[0]["tools"][0]["input"]) == main[0].tool_calls[0][2]

    listing = _cli("sessions", db=proxy.db_url)
    assert "claude" in listing and session[:8] in listing
    shown = json.loads(_cli("show", f"claude:{session}", "--json", db=proxy.db_url))
    assert [r["kind"] for r in shown["rounds"]].count("main") == 3


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_codex_loop_is_recorded(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    scripted_upstream: ScriptedUpstream,
    tracetap_proxy,
    transport: str,
) -> None:
    proxy = tracetap_proxy(openai_upstream=scripted_upstream.url)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_codex(
        agent_clis,
        proxy.openai_url,
        work,
        "Create one.txt and two.txt.",
        home=tmp_path / "home",
        websockets=transport == "websocket",
    )
    assert proc.returncode == 0, proc.stderr
    assert FINAL_TEXT in proc.stdout + proc.stderr
    assert (work / "one.txt").read_text() == "one\n" and (work / "two.txt").exists()
    assert proxy.stop() == 0

    main = [
        r
        for r in scripted_upstream.main_loop("/v1/responses")
        if r.body.get("generate") is not False
    ]  # not Codex's cache prewarm
    assert len(main) == 3
    assert {r.method for r in main} == ({"WS"} if transport == "websocket" else {"POST"})
    meta = json.loads(main[0].body["client_metadata"]["x-codex-turn-metadata"])
    session, turn = meta["session_id"], meta["turn_id"]
    exported = _export(proxy.db_url, tmp_path)
    rows = [r for r in exported if r["tt_kind"] == "main"]
    assert {r["tt_transport"] for r in rows} == {transport}
    assert [r["session_id"] for r in rows] == [f"codex:{session}"] * 3
    assert [r["round_id"] for r in rows] == [f"{turn}:0", f"{turn}:1", f"{turn}:2"]
    assert all(r["turn_id"] == turn for r in rows)
    assert {r["project"] for r in rows} == {"work"}  # from Codex's <cwd>
    _check_common(rows, main, "codex")
    assert [[t["tool_name"] for t in r["tools"]] for r in rows] == [
        ["exec_command"],
        ["exec_command", "exec_command"],
        [],
    ]
    for row, rec in zip(rows, main):
        u = rec.usage
        assert row["input_tokens_total"] == u["input_tokens"]
        assert row["prefix_tokens"] == u["input_tokens_details"]["cached_tokens"]
        assert row["output_tokens"] == u["output_tokens"]
        assert row["reasoning_output_tokens"] == u["output_tokens_details"]["reasoning_tokens"]
        assert row["claude_uncached_input_tokens"] is None
    # Codex reports each command's own duration ("Wall time: X seconds")
    outputs = [
        i["output"]
        for i in main[1].body["input"]
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    if any("Wall time" in str(o) for o in outputs):
        assert rows[0]["tools"][0]["tool_internal_latency_ms"] is not None
    assert [e["event_type"] for e in rows[1]["timing_events"]] == [
        "tool_result",
        "reasoning",
        "tool_call",
        "tool_call",
    ]


def test_claude_code_subagent_rounds_are_told_apart(
    tmp_path: Path, agent_clis: AgentCLIs, scripted_upstream: ScriptedUpstream, tracetap_proxy
) -> None:
    """A subagent (the Agent tool) shares the session id but has its own system prompt and
    history: its rounds are `subagent`, the delegating loop's are `main`."""
    scripted_upstream.scenario = "subagent"
    proxy, work, _ = _run_claude_through(
        tmp_path,
        agent_clis,
        scripted_upstream,
        tracetap_proxy,
        "Delegate the work.",
        tools=("Bash", "Read", "Agent"),
    )
    assert (work / "sub.txt").read_text() == "sub\n"
    sessions = {
        r.headers["X-Claude-Code-Session-Id"] for r in scripted_upstream.main_loop("/v1/messages")
    }
    assert len(sessions) == 1  # the subagent's requests carry the parent's session id
    rows = _export(proxy.db_url, tmp_path)
    assert {r["session_id"] for r in rows} == {f"claude:{sessions.pop()}"}
    sub = [r for r in rows if r["tt_kind"] == "subagent"]
    main = [r for r in rows if r["tt_kind"] == "main"]
    assert [[t["tool_name"] for t in r["tools"]] for r in sub] == [["Bash"], []]
    assert sub[0]["tools"][0]["tool_wall_latency_ms"] >= 0  # paired inside the subagent
    agent_calls = [t for r in main for t in r["tools"] if t["tool_name"] == "Agent"]
    assert len(agent_calls) == 1 and agent_calls[0]["result_at"] is not None
    out = tmp_path / "main.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetap",
            "export",
            "tracelab",
            "--db",
            proxy.db_url,
            "--kind",
            "main",
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert len(out.read_text().splitlines()) == len(main)


@pytest.mark.parametrize("fault", ["http_529", "error_midstream"])
def test_claude_code_retry_is_recorded_apart(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    scripted_upstream: ScriptedUpstream,
    tracetap_proxy,
    fault: str,
) -> None:
    """Claude Code retries a failed step itself: the failed attempt is kept (status, error)
    but is not a TraceLab round, and the resume note it adds is not a user message."""
    scripted_upstream.fault = fault
    proxy, _, _ = _run_claude_through(tmp_path, agent_clis, scripted_upstream, tracetap_proxy)
    rows = _export(proxy.db_url, tmp_path)
    main = [r for r in rows if r["tt_kind"] == "main"]
    failed = [r for r in main if not r["tt_complete"]]
    done = [r for r in main if r["tt_complete"]]
    assert [[t["tool_name"] for t in r["tools"]] for r in done] == [["Bash"], ["Bash", "Read"], []]
    assert [r["current_user_message_count"] for r in done] == [1, 0, 0]
    if fault == "http_529":
        # the 529 never produced a model round: only the shell of an error, not exported
        engine_rows = _cli("show", rows[0]["session_id"], "--json", db=proxy.db_url)
        statuses = [r["status"] for r in json.loads(engine_rows)["rounds"]]
        assert statuses.count(529) == 1 and failed == []
    else:
        [cut] = failed  # the stream that broke off, with the output seen before the error
        assert cut["tt_error_type"] == "overloaded_error"
        assert cut["round_index"] == 0 and done[0]["round_index"] == 1
