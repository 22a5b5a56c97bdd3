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

from tests.support.agents_cli import CLAUDE_API_KEY, AgentCLIs, claude_env, codex_config, codex_env
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
    env = claude_env(
        proxy.anthropic_url,
        home,
        {
            "TERM": "xterm-256color",
            # the TUI's requests beside the turns (session titles) are made too; anything for
            # another host meets a dead proxy at once
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
        },
    )
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
    titles = [c for c in calls if not c.body.get("tools")]
    assert titles and {kinds[_msg_id(c)] for c in titles} == {"side"}

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
                if c.at < call.at
                and c.body.get("tools")
                and not c.headers.get("x-claude-code-agent-id")
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


def test_codex_tui_session_is_recorded_as_it_happened(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    scripted_upstream: ScriptedUpstream,
    tracetap_proxy: Callable[..., RunningProxy],
) -> None:
    """Codex's TUI: a tool loop, an Esc mid-stream, a plain turn, `/compact`, a turn after it;
    beside each turn Codex asks for a thread title (a request without tools: `side`)."""
    scripted_upstream.scenario = "interactive"
    proxy = tracetap_proxy(openai_upstream=scripted_upstream.url)
    work = tmp_path / "work"
    work.mkdir()
    trusted = f'\n[projects."{work}"]\ntrust_level = "trusted"\n'  # no trust prompt
    env = codex_env(
        proxy.openai_url,
        tmp_path / "home",
        config=codex_config(proxy.openai_url) + trusted,
        extra={"TERM": "xterm-256color"},
    )
    # --no-daemon: the TUI's app server runs inside this process, not as a daemon left behind
    tui = Tmux(tmp_path / "tmux.sock", [str(agent_clis.codex), "--no-daemon"], cwd=work, env=env)
    pressed: dict[str, float] = {}

    def turn(text: str, shows: str, timeout: float = 30) -> None:
        time.sleep(PAUSE)
        tui.type(text)
        time.sleep(1.0)  # Codex takes keys typed in a burst for a paste: Enter comes apart
        pressed[text] = time.time()
        tui.key("Enter")
        tui.wait_for(shows, timeout)

    try:
        tui.wait_for("Ask Codex to do anything", 30)
        turn("hello there", "All done: both commands ran.")
        turn("go slow", "word010")
        tui.key("Escape")
        interrupted_at = time.time()
        tui.wait_for("interrupted", 10)
        turn("thanks", "Noted: thanks.")
        turn("/compact", "Context compacted")
        turn("after compact", "Noted: after compact.")
        tui.key("C-c")
        time.sleep(0.5)
        tui.key("C-c")
    finally:
        tui.close()
    assert proxy.stop() == 0

    calls = [r for r in scripted_upstream.requests if r.path.startswith("/v1/responses")]
    rows = _export(proxy.db_url, tmp_path / "session.jsonl")
    assert len(rows) == len(calls)  # every request the TUI sent
    rows.sort(key=lambda r: parse_ts(r["tt_request_at"]))
    [compact] = [c for c in calls if "CONTEXT CHECKPOINT COMPACTION" in json.dumps(c.body)]
    titles = [c for c in calls if not c.body.get("tools") and c is not compact]
    assert titles  # Codex names the thread beside the first turns
    # the TUI's turns and its compaction share one session; each title request is a thread
    # of its own (its own session-id), kept apart as `side`
    thread = {c.headers["session-id"] for c in calls if c not in titles}
    assert len(thread) == 1
    session = f"codex:{thread.pop()}"
    kinds = [r["tt_kind"] for r in rows if r["session_id"] == session]
    assert kinds.count("compaction") == 1 and kinds[-2] == "compaction"
    assert kinds.count("main") == len(calls) - len(titles) - 1 == len(kinds) - 1
    assert sorted(r["session_id"] for r in rows if r["session_id"] != session) == sorted(
        f"codex:{c.headers['session-id']}" for c in titles
    )
    assert {r["tt_kind"] for r in rows if r["session_id"] != session} == {"side"}

    engine = make_engine(proxy.db_url)
    with OrmSession(engine) as db:
        [rnd] = db.scalars(
            sa.select(m.Round).where(m.Round.complete.is_(False), m.Round.kind == "main")
        ).all()
        seen = "".join(
            c.get("text", "")
            for item in response(db, rnd)["output"]
            for c in item.get("content") or []
        )
    engine.dispose()
    assert rnd.error_type == "client_disconnected"
    assert SLOW_TEXT.startswith(seen.strip()) and "word010" in seen and len(seen) < len(SLOW_TEXT)
    assert rnd.end_at is not None and abs(rnd.end_at - interrupted_at) < 1.0
    # the typed turns start when Enter was pressed, after the pause
    starts = {_typed_codex(c): c.at for c in calls if c.body.get("tools")}
    for text in ("go slow", "thanks", "after compact"):
        assert abs(starts[text] - pressed[text]) < 1.0


def _typed_codex(rec: Recorded) -> str:
    items = [i for i in rec.body.get("input") or [] if isinstance(i, dict)]
    last = items[-1] if items else {}
    if last.get("type") != "message":
        return ""
    return "".join(c.get("text", "") for c in last.get("content") or [])
