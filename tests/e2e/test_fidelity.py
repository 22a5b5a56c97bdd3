"""The measured prompt is what the model saw: on the real CLIs' append-only loops every round
reuses the whole previous prompt (whatever wire spelling the CLI chose for the same content),
in `cache`, `show` and the TraceLab and Mooncake exports; a rewritten earlier message is
reported at that message, with the cause `history-rewritten`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import pytest
from sqlalchemy.orm import Session

from tests.support.agents_cli import AgentCLIs, run_claude, run_codex
from tests.support.scripted import ScriptedUpstream, anthropic_step
from tracetap.storage.db import make_engine
from tracetap.tokens import report
from tracetap.tokens.render import element_text
from tracetap.tokens.tokenizer import DEFAULT_TOKENIZER, get_tokenizer

pytestmark = pytest.mark.slow

MIN_REUSE = 0.97
BREAKS = {"tools-changed", "system-changed", "history-rewritten", "unexplained"}


class IdealCacheUpstream(ScriptedUpstream):
    """Reports as cached the whole previous prompt of the loop (an ideal prefix cache), so the
    provider's figures agree with an append-only measured prefix."""

    def __init__(self) -> None:
        super().__init__()
        self._prev_total = 0

    def _anthropic_usage(self, body: dict[str, Any], output: int) -> dict[str, Any]:
        usage = super()._anthropic_usage(body, output)
        total = sum(
            usage[k]
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        read = 0 if anthropic_step(body) == 0 else min(self._prev_total, total - 3)
        self._prev_total = total
        usage["cache_read_input_tokens"] = read
        usage["cache_creation_input_tokens"] = total - 3 - read
        usage["cache_creation"]["ephemeral_5m_input_tokens"] = total - 3 - read
        return usage

    def _responses_events(
        self, rec: Any, body: dict[str, Any], fault: str | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        events, final = super()._responses_events(rec, body, fault)
        usage = final["usage"]  # the object the completed event and the record hold
        details = usage["input_tokens_details"]
        total = usage["input_tokens"]
        details["cached_tokens"] = min(self._prev_total, total) if details["cached_tokens"] else 0
        self._prev_total = total
        return events, final


@pytest.fixture
def ideal_upstream() -> Any:
    up = IdealCacheUpstream().start()
    yield up
    up.stop()


def _cli(*args: str, db: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tracetap", *args, "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _rounds(db: str) -> tuple[str, list[dict[str, Any]]]:
    with Session(make_engine(db)) as s:
        [rep] = report.cache(s)
    return rep["session"], rep["rounds"]


def _reuse(rounds: list[dict[str, Any]]) -> list[float]:
    """Per round after the first: measured reuse over the previous round's measured prompt."""
    return [
        cur["measured_prefix_tokens"] / prev["prompt_tokens"]
        for prev, cur in zip(rounds, rounds[1:])
    ]


def _check_append_only(db: str, tmp: Path, *, strict_cause: bool) -> list[float]:
    """Every view of the one recorded session agrees the loop only appended."""
    session, rounds = _rounds(db)
    assert len(rounds) >= 3
    reuse = _reuse(rounds)
    assert min(reuse) >= MIN_REUSE, reuse
    for r in rounds[1:]:
        assert r["prefix_break"] == "append", r
        if strict_cause:
            assert r["cause"] is None, r
        else:  # the scripted figures of a WebSocket run are not a prompt's: no break, though
            assert r["cause"] not in BREAKS, r
    # cache --all --json (JSON lines: the rounds, then a summary)
    lines = [json.loads(line) for line in _cli("cache", "--all", "--json", db=db).splitlines()]
    listed = [r for r in lines if r.get("type") == "round"]
    assert [r["measured_prefix_tokens"] for r in listed] == [
        r["measured_prefix_tokens"] for r in rounds
    ]
    assert [(r["prefix_break"], r["cause"]) for r in listed] == [
        (r["prefix_break"], r["cause"]) for r in rounds
    ]
    # show --json
    shown = json.loads(_cli("show", session, "--json", db=db))
    prefixes = [r["prefix"] for r in shown["rounds"] if r.get("prefix")]
    assert [p["measured_prefix_tokens"] for p in prefixes] == [
        r["measured_prefix_tokens"] for r in rounds
    ]
    assert all(p["prefix_break"] in (None, "append") for p in prefixes)
    # TraceLab export: the measured prefix, and the chain each round continues
    out = tmp / "tracelab.jsonl"
    _cli("export", "tracelab", "--extended", "-o", str(out), db=db)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    exported = [r for r in rounds if r["kind"] != "side"]  # not Codex's cache prewarm
    assert [r["tt_measured_prefix_tokens"] for r in rows] == [
        r["measured_prefix_tokens"] for r in exported
    ]
    for prev, cur in zip(rows, rows[1:]):
        n = len(prev["tt_block_hashes"])
        assert cur["tt_block_hashes"][:n] == prev["tt_block_hashes"]
    # Mooncake export at the recorded block size: consecutive rounds share the prefix ids
    moon = tmp / "mooncake.jsonl"
    _cli("export", "mooncake", "--block-size", "64", "-o", str(moon), db=db)
    moons = [json.loads(line) for line in moon.read_text().splitlines()]
    assert len(moons) == len(rows)
    for row, prev, cur in zip(rows, moons, moons[1:]):
        # the export sizes a round by the provider's input count: the chain up to it
        n = min(len(row["tt_block_hashes"]), prev["input_length"] // 64, cur["input_length"] // 64)
        assert n > 0 and cur["hash_ids"][:n] == prev["hash_ids"][:n]
    return reuse


def test_claude_code_loop_reuses_the_whole_previous_prompt(
    tmp_path: Path, agent_clis: AgentCLIs, ideal_upstream: IdealCacheUpstream, tracetap_proxy
) -> None:
    """Claude Code moves its cache breakpoint each request and re-sends the message it took
    it off as a plain string: the same tokens, so no reuse is lost."""
    proxy = tracetap_proxy(anthropic_upstream=ideal_upstream.url)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_claude(
        agent_clis, proxy.anthropic_url, work, "Create one.txt and two.txt.", home=tmp_path / "h"
    )
    assert proc.returncode == 0, proc.stderr
    assert proxy.stop() == 0
    bodies = [r.body for r in ideal_upstream.main_loop("/v1/messages")]
    assert len(bodies) == 3
    # the wire really differs: a message re-sent in another spelling (or without its marker)
    assert any(
        json.dumps(a) != json.dumps(b)
        for prev, cur in zip(bodies, bodies[1:])
        for a, b in zip(prev["messages"], cur["messages"])
    )
    _check_append_only(proxy.db_url, tmp_path, strict_cause=True)


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_codex_loop_reuses_the_whole_previous_prompt(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    ideal_upstream: IdealCacheUpstream,
    tracetap_proxy,
    transport: str,
) -> None:
    """Over a WebSocket Codex sends only new input after `previous_response_id`: the measured
    prompt continues the referenced response's conversation."""
    proxy = tracetap_proxy(openai_upstream=ideal_upstream.url)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_codex(
        agent_clis,
        proxy.openai_url,
        work,
        "Create one.txt and two.txt.",
        home=tmp_path / "h",
        websockets=transport == "websocket",
    )
    assert proc.returncode == 0, proc.stderr
    assert proxy.stop() == 0
    _check_append_only(proxy.db_url, tmp_path, strict_cause=transport == "sse")


# -- a rewritten earlier message, at the protocol level ----------------------------------------

SYSTEM = [
    {"type": "text", "text": "You are a careful test agent. " * 20},
    {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}},
]
TOOLS = [
    {
        "name": "Bash",
        "description": "Run a shell command.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    }
]
OUTPUT_A = "".join(f"line {i}: the first command's output\n" for i in range(120))
OUTPUT_B = "".join(f"row {i}: the second command's output\n" for i in range(120))


def _tool_use(call: str, cmd: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Running it."},
            {"type": "tool_use", "id": call, "name": "Bash", "input": {"command": cmd}},
        ],
    }


def _result(call: str, text: str, *, as_blocks: bool) -> dict[str, Any]:
    content: Any = (
        [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]
        if as_blocks
        else text
    )
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call, "content": content}],
    }


def test_rewritten_history_is_reported_at_the_message_that_changed(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, tracetap_proxy
) -> None:
    """The CLIs only append in a scripted loop (rewriting needs a compaction or a cleared tool
    result, which the short loop never triggers): the Anthropic SDK sends the requests. Round 2
    re-sends round 1's messages in other spellings (string content, the breakpoint moved): an
    append. Round 3 clears an earlier tool result: the break is inside that message."""
    proxy = tracetap_proxy(anthropic_upstream=scripted_upstream.url)
    client = anthropic.Anthropic(
        base_url=proxy.anthropic_url,
        api_key="sk-ant-api03-fidelity",
        default_headers={"X-Claude-Code-Session-Id": "fidelity-rewrite-0001"},
        max_retries=0,
    )
    first = {"role": "user", "content": [{"type": "text", "text": "Run the two steps."}]}
    first_str = {"role": "user", "content": "Run the two steps."}
    call_a, call_b = "toolu_01FidelityA", "toolu_01FidelityB"
    requests = [
        [first],
        [first, _tool_use(call_a, "step a"), _result(call_a, OUTPUT_A, as_blocks=True)],
        [
            first_str,
            _tool_use(call_a, "step a"),
            _result(call_a, OUTPUT_A, as_blocks=False),
            _tool_use(call_b, "step b"),
            _result(call_b, OUTPUT_B, as_blocks=True),
        ],
        [
            first_str,
            _tool_use(call_a, "step a"),
            _result(call_a, "[Old tool result content cleared]", as_blocks=False),
            _tool_use(call_b, "step b"),
            _result(call_b, OUTPUT_B, as_blocks=False),
            {"role": "assistant", "content": "Both steps ran."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks.", "cache_control": {"type": "ephemeral"}}
                ],
            },
        ],
    ]
    for messages in requests:
        with client.messages.stream(
            model="claude-test", max_tokens=64, system=SYSTEM, tools=TOOLS, messages=messages
        ) as stream:
            stream.get_final_message()
    assert proxy.stop() == 0

    session, rounds = _rounds(proxy.db_url)
    assert session == "claude:fidelity-rewrite-0001" and len(rounds) == 4
    assert [r["prefix_break"] for r in rounds[1:3]] == ["append", "append"]
    assert min(_reuse(rounds[:3])) >= MIN_REUSE
    rewritten = rounds[3]
    assert rewritten["prefix_break"] == "history-rewritten"
    assert rewritten["cause"] == "history-rewritten"
    # the measured prefix ends inside message 2 (the cleared tool result), after message 1
    tok = get_tokenizer(DEFAULT_TOKENIZER)
    api = "anthropic_messages"
    elements = [*TOOLS, *SYSTEM, *requests[3]]
    ends, at = [], 0
    for e in elements:
        at += len(tok.encode(element_text(api, e, set())))
        ends.append(at)
    msg2 = len(TOOLS) + len(SYSTEM) + 2
    assert ends[msg2 - 1] <= rewritten["measured_prefix_tokens"] < ends[msg2]
    assert rewritten["prompt_tokens"] == ends[-1]
    shown = json.loads(_cli("show", session, "--json", db=proxy.db_url))
    assert [r["prefix"]["prefix_break"] for r in shown["rounds"]][3] == "history-rewritten"
