"""Teams on PostgreSQL: several proxies write concurrently into one database, and a database
outage loses nothing (the journal buffers; the backlog is written when the server returns).
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from pathlib import Path

import anthropic
import pytest
import sqlalchemy as sa

from tests.support.postgres import PostgresServer
from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine

pytestmark = pytest.mark.slow

SYSTEM = "You are a coding agent. " * 300  # shared by every session: stored once
TOOLS = [
    {
        "name": "Bash",
        "description": "Run a shell command. " * 50,
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
    {"name": "Read", "description": "Read a file. " * 50, "input_schema": {"type": "object"}},
]


def agent_session(base_url: str, session: str) -> list[str]:
    """A scripted agent loop: one tool call, then two parallel calls, then the answer."""
    client = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-api03-team", max_retries=0)
    messages: list[dict] = [{"role": "user", "content": f"Task for {session}"}]
    ids = []
    for _ in range(3):
        msg = client.messages.create(
            model="claude-team",
            max_tokens=64,
            system=SYSTEM,
            tools=TOOLS,
            messages=messages,
            extra_headers={"X-Claude-Code-Session-Id": session},
        )
        ids.append(msg.id)
        calls = [b for b in msg.content if b.type == "tool_use"]
        if not calls:
            break
        messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": c.id, "content": f"ran {c.input}"}
                    for c in calls
                ],
            }
        )
    return ids


def _rounds(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.Round.response_id, m.Session.agent_session_id).join(
                m.Session, m.Session.id == m.Round.session_pk
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_four_proxies_ten_sessions_each(
    tmp_path: Path, pg_url: str, scripted_upstream: ScriptedUpstream
) -> None:
    proxies = [
        start_proxy(
            tmp_path / f"p{i}",
            confdir=tmp_path / "mitm",
            db_url=pg_url,
            anthropic_upstream=scripted_upstream.url,
        )
        for i in range(4)
    ]
    try:
        started = time.perf_counter()
        with cf.ThreadPoolExecutor(max_workers=40) as pool:
            futures = {
                pool.submit(agent_session, p.anthropic_url, f"team-{i}-{j}"): (i, j)
                for i, p in enumerate(proxies)
                for j in range(10)
            }
            sent = {f"team-{i}-{j}": fut.result() for fut, (i, j) in futures.items()}
        elapsed = time.perf_counter() - started
    finally:
        for p in proxies:
            assert p.stop() == 0
    expected = sorted((mid, s) for s, ids in sent.items() for mid in ids)
    assert len(expected) == 120
    got = sorted(_rounds(pg_url))
    assert got == expected  # every round exactly once, in the right session
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        # the shared system prompt and tool definitions are stored once for all 4 proxies
        tools_hashes = set(conn.execute(sa.select(m.Round.tools_hash)).scalars())
        assert len(tools_hashes) == 1
        blobs = conn.execute(sa.select(sa.func.count()).select_from(m.Blob)).scalar_one()
        assert blobs < 120 * 3  # far fewer than one copy per request
        sessions = conn.execute(sa.select(sa.func.count()).select_from(m.Session)).scalar_one()
        assert sessions == 40
    print(
        f"\n4 proxies x 10 sessions: {len(got)} rounds in {elapsed:.2f}s "
        f"({len(got) / elapsed:.0f} rounds/s end to end)"
    )


def test_database_outage_buffers_in_the_journal(
    tmp_path: Path, pg_server: PostgresServer, scripted_upstream: ScriptedUpstream
) -> None:
    url = pg_server.create_database()
    proxy: RunningProxy = start_proxy(
        tmp_path / "p",
        confdir=tmp_path / "mitm",
        db_url=url,
        anthropic_upstream=scripted_upstream.url,
        admin=True,
    )
    import httpx

    health = f"http://127.0.0.1:{proxy.admin_port}/healthz"
    try:
        before = agent_session(proxy.anthropic_url, "outage-before")
        pg_server.stop()
        down_at = time.time()
        during = []
        while time.time() - down_at < 5 or len(during) < 3:  # traffic keeps flowing
            during.append(agent_session(proxy.anthropic_url, f"outage-during-{len(during)}"))
        deadline = time.time() + 30
        while httpx.get(health, timeout=5).json()["db_healthy"] and time.time() < deadline:
            time.sleep(0.1)
        reply = httpx.get(health, timeout=5)
        state = reply.json()
        # still serving and recording: healthy for probes, degraded in the body
        assert reply.status_code == 200 and state["status"] == "degraded"
        assert state["db_healthy"] is False and state["journal_backlog_bytes"] > 0
        pg_server.start()
        up_at = time.time()
        outage = up_at - down_at
        deadline = time.time() + 60
        while time.time() < deadline:
            state = httpx.get(health, timeout=5).json()
            if state["db_healthy"] and state["journal_backlog_bytes"] == 0:
                break
            time.sleep(0.1)
        recovery = time.time() - up_at
        assert state["db_healthy"] and state["journal_backlog_bytes"] == 0
        after = agent_session(proxy.anthropic_url, "outage-after")
    finally:
        proxy.stop()
    ids = before + [i for s in during for i in s] + after
    assert sorted(r for r, _ in _rounds(url)) == sorted(ids)
    print(
        f"\noutage {outage:.1f}s with {len(during) * 3} rounds buffered; "
        f"backlog written {recovery:.1f}s after the database returned"
    )
