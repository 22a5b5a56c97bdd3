"""Long sessions through `tracetap proxy`: 150 rounds whose context grows to the window and is
compacted by the client. Storage grows by each round's new content, not by its context.

Once driven by the Anthropic SDK (the store's size measured as the session goes), once by the
real Claude Code in `-p`, which compacts by itself when the reported usage reaches its window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.tokens import report

pytestmark = pytest.mark.slow

ROUNDS = 150
WINDOW = 40_000  # tokens: the client compacts once a request reports more than this
SESSION = "0b9f6a52-5d7e-4d0c-9a51-3c2f1e7d8a60"
SYSTEM = [{"type": "text", "text": "You are a coding agent. " * 40}]
TOOLS = [
    {"name": "Bash", "description": "Run a command.", "input_schema": {"type": "object"}},
    {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object"}},
]
COMPACT_PROMPT = (
    "Your task is to create a detailed summary of the conversation so far, paying close "
    "attention to the user's explicit requests and your previous actions."
)


class IdealCacheUpstream(ScriptedUpstream):
    """Reports the previous request's prompt as cached (an ideal prefix cache)."""

    def __init__(self) -> None:
        super().__init__(gap=0)
        self._prev_total = 0

    def _anthropic_usage(self, body: dict[str, Any], output: int) -> dict[str, Any]:
        usage = super()._anthropic_usage(body, output)
        total = len(json.dumps(body)) // 4
        read = min(self._prev_total, total - 3)
        self._prev_total = total
        usage.update(
            input_tokens=3,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=total - 3 - read,
        )
        usage["cache_creation"]["ephemeral_5m_input_tokens"] = total - 3 - read
        return usage


def _output(i: int) -> str:
    """A command's output for round i: new text every round (about 1.5 KB)."""
    return "\n".join(
        f"{i:04d}:{j:02d} build step {i * 31 + j} finished in {j}ms" for j in range(40)
    )


def _db_bytes(db_url: str) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    engine.dispose()
    return int(pages) * int(size)


def _stored(db_url: str, want: int) -> None:
    engine = make_engine(db_url)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            with engine.connect() as conn:
                n = conn.execute(sa.select(sa.func.count()).select_from(m.Round)).scalar_one()
            if n >= want:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"only {n} of {want} rounds stored")


def _session_rounds(proxy: RunningProxy) -> tuple[list[tuple[int, int]], int]:
    """Run the session: (round, stored bytes) every 10 rounds, and the round before which
    the client compacted."""
    client = anthropic.Anthropic(
        base_url=proxy.anthropic_url,
        api_key="sk-ant-api03-long",
        max_retries=0,
        default_headers={"x-claude-code-session-id": SESSION, "user-agent": "claude-cli/2.1.328"},
    )
    messages: list[dict[str, Any]] = []
    sizes: list[tuple[int, int]] = []
    compacted_at = -1
    pending: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": "Build it."}]}
    for i in range(ROUNDS):
        messages.append(pending)
        msg = client.messages.create(
            model="claude-long",
            max_tokens=1024,
            system=SYSTEM,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            messages=messages,  # type: ignore[arg-type]
        )
        messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
        calls = [b for b in msg.content if b.type == "tool_use"]
        blocks: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": b.id, "content": _output(i)} for b in calls
        ]
        reported = (
            msg.usage.input_tokens
            + (msg.usage.cache_read_input_tokens or 0)
            + (msg.usage.cache_creation_input_tokens or 0)
        )
        if compacted_at < 0 and reported > WINDOW:  # the client compacts its context
            compacted_at = i + 1
            blocks.append({"type": "text", "text": COMPACT_PROMPT})
            messages.append({"role": "user", "content": blocks})
            summary = client.messages.create(
                model="claude-long",
                max_tokens=1024,
                system=SYSTEM,  # type: ignore[arg-type]
                tools=TOOLS,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
            )
            text = "".join(b.text for b in summary.content if b.type == "text")
            messages = []
            blocks = [{"type": "text", "text": f"Summary of the work so far: {text}"}]
        blocks.append({"type": "text", "text": f"Go on (round {i}): {_output(i)}"})
        pending = {"role": "user", "content": blocks}
        if i % 10 == 9:
            requests = i + 1 + (1 if 0 < compacted_at <= i + 1 else 0)
            _stored(proxy.db_url, requests)
            sizes.append((i, _db_bytes(proxy.db_url)))
    return sizes, compacted_at


def test_long_session_storage_and_reuse_across_compaction(tmp_path: Path) -> None:
    upstream = IdealCacheUpstream().start()
    proxy = start_proxy(
        tmp_path / "proxy", confdir=tmp_path / "mitm", anthropic_upstream=upstream.url
    )
    try:
        sizes, compacted_at = _session_rounds(proxy)
    finally:
        assert proxy.stop() == 0
        upstream.stop()
    assert 60 < compacted_at < ROUNDS - 30  # the context reached the window mid-session

    # storage: bytes per round before and after the compaction are each round's new content
    def per_round(samples: list[tuple[int, int]]) -> float:
        (i0, b0), (i1, b1) = samples[0], samples[-1]
        return (b1 - b0) / (i1 - i0)

    per_round_before = per_round([(i, b) for i, b in sizes if 19 <= i < compacted_at - 1])
    per_round_after = per_round([(i, b) for i, b in sizes if i >= compacted_at + 10])
    end = sizes[-1][1]
    new_content = len(_output(0)) * 2  # the tool output, and the text that goes on
    prompt_bytes = len(json.dumps(upstream.requests[compacted_at - 1].body))
    print(
        f"\nstorage: {per_round_before:.0f} B/round before compaction, "
        f"{per_round_after:.0f} B/round after; new content {new_content} B/round, "
        f"prompt {prompt_bytes} B at the window; {end / 1e6:.2f} MB for {ROUNDS + 1} requests"
    )
    assert per_round_before < 2 * new_content and per_round_after < 2 * new_content
    assert per_round_before < prompt_bytes / 10

    # show stays fast on the long session
    started = time.perf_counter()
    shown = subprocess.run(
        [sys.executable, "-m", "tracetap", "show", f"claude:{SESSION}", "--json"]
        + ["--db", proxy.db_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    show_seconds = time.perf_counter() - started
    print(f"show: {show_seconds:.2f} s")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["rounds"]) == ROUNDS + 1
    assert show_seconds < 10

    # measured reuse: the whole previous prompt every round, except right after the
    # compaction, where only the system prompt and tools stayed
    with OrmSession(make_engine(proxy.db_url)) as db:
        [rep] = report.cache(db)
    rounds = rep["rounds"]
    assert len(rounds) == ROUNDS + 1
    kinds = [r["kind"] for r in rounds]
    assert kinds.count("compaction") == 1 and kinds.index("compaction") == compacted_at
    restart = compacted_at + 1
    for k, (prev, cur) in enumerate(zip(rounds, rounds[1:]), start=1):
        if k == restart:
            assert cur["prefix_break"] != "append", cur
            assert cur["measured_prefix_tokens"] < prev["prompt_tokens"] / 10
        else:
            assert cur["prefix_break"] == "append", (k, cur)
            assert cur["measured_prefix_tokens"] >= 0.97 * prev["prompt_tokens"], (k, cur)


def test_claude_code_long_session_auto_compacts_and_is_recorded(
    tmp_path: Path, agent_clis: Any, tracetap_proxy: Any
) -> None:
    """The real Claude Code runs 150 tool steps in `-p`; the usage the upstream reports makes
    it reach its window and compact by itself (twice). Each round stores its new messages
    only, and measured reuse is the previous prompt except right after each compaction."""
    from tests.support.agents_cli import run_claude

    upstream = ScriptedUpstream(gap=0)
    upstream.scenario, upstream.long_steps, upstream.usage_scale = "long", ROUNDS, 20
    upstream.start()
    try:
        proxy = tracetap_proxy(anthropic_upstream=upstream.url)
        (tmp_path / "work").mkdir()
        proc = run_claude(
            agent_clis,
            proxy.anthropic_url,
            tmp_path / "work",
            "Build it step by step.",
            home=tmp_path / "home",
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert proxy.stop() == 0
    finally:
        upstream.stop()
    compactions = [
        i
        for i, r in enumerate(upstream.requests)
        if "detailed summary" in json.dumps(r.body["messages"][-1:])
    ]
    assert len(compactions) >= 1 and len(upstream.requests) > ROUNDS

    engine = make_engine(proxy.db_url)
    with OrmSession(engine) as db:
        [rep] = report.cache(db)
        stored = db.scalars(sa.select(m.Round).order_by(m.Round.request_at)).all()
        sizes = dict(db.execute(sa.select(m.Blob.hash, m.Blob.size)).all())
    engine.dispose()
    rounds = rep["rounds"]
    assert len(rounds) == len(upstream.requests)
    assert [i for i, r in enumerate(rounds) if r["kind"] == "compaction"] == compactions
    restarts = {i + 1 for i in compactions}
    for k, (prev, cur) in enumerate(zip(rounds, rounds[1:]), start=1):
        if k in restarts:  # a new history from the summary: only system and tools reused
            assert cur["prefix_break"] != "append", (k, cur)
            assert cur["measured_prefix_tokens"] < prev["prompt_tokens"] / 2, (k, cur)
        elif k not in compactions:
            assert cur["prefix_break"] == "append", (k, cur)
            assert cur["measured_prefix_tokens"] >= 0.97 * prev["prompt_tokens"], (k, cur)

    # storage: the message blobs each round adds are its new messages, a few KB, however
    # long the context it re-sends (up to ~200 KB here)
    seen: set[str] = set()
    added: list[int] = []
    for rnd in stored:
        new = [h for h in rnd.msg_new if h not in seen]
        seen.update(new)
        added.append(sum(sizes.get(h, 0) for h in new))
    # the first two rounds, and each compaction with the two rounds after it, carry the long
    # messages of a history's start (instructions, the summary) in their two spellings
    edges = {0, 1} | set(compactions) | restarts | {k + 1 for k in restarts}
    steady = [b for k, b in enumerate(added) if k not in edges]
    sent = [len(r.raw) for r in upstream.requests]
    print(
        f"\nClaude Code: {len(added)} requests, {len(compactions)} compactions; new message "
        f"bytes per round median {sorted(steady)[len(steady) // 2]}, max {max(steady)}; "
        f"request bytes up to {max(sent)}; store {_db_bytes(proxy.db_url) / 1e6:.2f} MB"
    )
    # (a step adds ~2.2 KB; Claude Code re-sends the previous tool result without its moving
    # cache_control marker, a second spelling stored once more)
    assert max(steady) < 8_000 and max(sent) > 150_000
    assert max(added[k] for k in edges) < 20_000
