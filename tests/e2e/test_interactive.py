"""A person's interactive Claude Code session (the TUI in tmux) through `tracetap proxy`.

Turns with pauses, an Esc in the middle of a streamed answer, a subagent, `/compact`: every
request the TUI sent is recorded, each as what it was, in one session.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tests.support.agents_cli import CLAUDE_API_KEY, AgentCLIs, claude_env
from tests.support.proxy import RunningProxy
from tests.support.scripted import SLOW_TEXT, Recorded, ScriptedUpstream
from tests.support.tmux import Tmux
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.storage.reconstruct import response
from tracetap.tracelab import parse_ts

pytestmark = pytest.mark.slow

PAUSE = 1.5  # seconds the "person" waits after an answer before typing the next turn


def _onboarded(home: Path, work: Path) -> None:
    """Claude Code's first-run state, done: theme chosen, API key approved, folder trusted."""
    config = home / ".claude"
    config.mkdir(parents=True)
    (config / ".claude.json").write_text(
        json.dumps(
            {
                "hasCompletedOnboarding": True,
                "theme": "dark",
                "customApiKeyResponses": {"approved": [CLAUDE_API_KEY[-20:]], "rejected": []},
                "projects": {str(work): {"hasTrustDialogAccepted": True}},
            }
        )
    )


def _msg_id(rec: Recorded) -> str | None:
    found = re.search(rb'"id":"(msg_[^"]+)"', rec.sent_bytes)
    return found.group(1).decode() if found else None


def _typed(rec: Recorded) -> str:
    users = [x for x in rec.body.get("messages") or [] if x.get("role") == "user"]
    content = users[-1]["content"] if users else ""
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    texts = [b.get("text") or "" for b in blocks if b.get("type") == "text"]
    return next((t for t in reversed(texts) if not t.startswith("<")), "")


def _export(db: str, out: Path) -> list[dict[str, Any]]:
    subprocess.run(
        [sys.executable, "-m", "tracetap", "export", "tracelab", "--db", db, "-o", str(out)]
        + ["--extended", "--kind", "all"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_claude_code_tui_session_is_recorded_as_it_happened(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    scripted_upstream: ScriptedUpstream,
    tracetap_proxy: Callable[..., RunningProxy],
) -> None:
    scripted_upstream.scenario = "interactive"
    proxy = tracetap_proxy(anthropic_upstream=scripted_upstream.url)
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    _onboarded(home, work)
    env = claude_env(proxy.anthropic_url, home, {"TERM": "xterm-256color"})
    tui = Tmux(
        tmp_path / "tmux.sock",
        [str(agent_clis.claude), "--permission-mode", "default"]
        + ["--allowedTools", "Bash", "Read", "Agent"],
        cwd=work,
        env=env,
    )
    pressed: dict[str, float] = {}  # turn -> when Enter was pressed

    def turn(text: str, shows: str, timeout: float = 30) -> None:
        time.sleep(PAUSE)
        tui.type(text)
        time.sleep(0.2)
        pressed[text] = time.time()
        tui.key("Enter")
        tui.wait_for(shows, timeout)

    try:
        tui.wait_for("❯", 30)
        turn("hello there", "Noted: hello there.")
        turn("please run it", "Done: the command ran.")
        turn("go slow", "word010")
        tui.key("Escape")  # mid-stream: the answer is still arriving
        interrupted_at = time.time()
        tui.wait_for("Interrupted", 10)
        turn("now delegate", 'Agent "Write sub.txt" finished')
        tui.wait_for("Noted: .", 20)  # the main loop's answer to the subagent's notification
        turn("/compact", "Compacted")
        turn("after compact", "Noted: after compact.")
        tui.type("/exit")
        tui.key("Enter")
        deadline = time.time() + 10
        while not tui.dead() and time.time() < deadline:
            time.sleep(0.1)
    finally:
        tui.close()
    assert proxy.stop() == 0
    assert (work / "ran.txt").exists() and (work / "sub.txt").exists()

    calls = [r for r in scripted_upstream.requests if r.path.startswith("/v1/messages")]
    rows = _export(proxy.db_url, tmp_path / "session.jsonl")
    by_id = {r["round_id"]: r for r in rows}
    # every model request the TUI sent is a recorded round, in one session
    assert sorted(by_id) == sorted(_msg_id(c) for c in calls)
    sessions = {c.headers["X-Claude-Code-Session-Id"] for c in calls}
    assert len(sessions) == 1
    assert {r["session_id"] for r in rows} == {f"claude:{sessions.pop()}"}
    kinds = {_msg_id(c): by_id[_msg_id(c)]["tt_kind"] for c in calls}
    for call in calls:
        rid = _msg_id(call)
        if not call.body.get("tools"):
            assert kinds[rid] == "side", rid

    # the interrupted answer: incomplete, with the words that arrived before Esc
    [slow] = [c for c in calls if _typed(c) == "go slow"]
    engine = make_engine(proxy.db_url)
    with OrmSession(engine) as db:
        rnd = db.scalars(sa.select(m.Round).where(m.Round.response_id == _msg_id(slow))).one()
        assert not rnd.complete and rnd.error_type == "client_disconnected"
        seen = "".join(b.get("text", "") for b in response(db, rnd)["content"])
    engine.dispose()
    assert SLOW_TEXT.startswith(seen) and "word010" in seen and len(seen) < len(SLOW_TEXT)
    assert rnd.end_at is not None and abs(rnd.end_at - interrupted_at) < 1.0

    # the compaction request, and the subagent's rounds on the agent's own lineage
    [compact] = [c for c in calls if "detailed summary" in json.dumps(c.body["messages"][-1:])]
    assert kinds[_msg_id(compact)] == "compaction"
    sub_calls = [c for c in calls if c.headers.get("x-claude-code-agent-id")]
    assert (
        len(sub_calls) == 2 and len({c.headers["x-claude-code-agent-id"] for c in sub_calls}) == 1
    )
    assert {kinds[_msg_id(c)] for c in sub_calls} == {"subagent"}
    main_ids = [_msg_id(c) for c in calls if kinds[_msg_id(c)] == "main"]
    assert [by_id[i]["round_index"] for i in main_ids] == sorted(
        by_id[i]["round_index"] for i in main_ids
    )
    with OrmSession(make_engine(proxy.db_url)) as db:
        lineage = dict(db.execute(sa.select(m.Round.response_id, m.Round.thread_key)).all())
    assert len({lineage[_msg_id(c)] for c in sub_calls}) == 1
    assert lineage[_msg_id(sub_calls[0])] not in {lineage[i] for i in main_ids}

    # the human waits: from the previous answer's last event to the typed message, as the
    # upstream saw them, and at least the pause the person took
    for text in ("please run it", "go slow", "after compact"):
        [call] = [c for c in calls if _typed(c) == text]
        before = max(
            (
                c
                for c in calls
                if c.at < call.at and c.sent and not c.headers.get("x-claude-code-agent-id")
            ),
            key=lambda c: c.at,
        )
        truth = call.at - before.sent[-1][0]
        row = by_id[_msg_id(call)]
        [typed] = [e for e in row["timing_events"] if e["event_type"] == "user_message"]
        prev = by_id[_msg_id(before)]["timing_events"][-1]
        recorded = parse_ts(typed["timestamp"]) - parse_ts(prev["timestamp"])
        assert recorded >= PAUSE and abs(recorded - truth) < 0.25, (text, recorded, truth)
        assert abs(parse_ts(typed["timestamp"]) - pressed[text]) < 1.0
