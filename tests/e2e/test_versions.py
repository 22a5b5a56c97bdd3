"""Version drift: the installed CLIs are the versions WIRE_NOTES.md verified, and what a newer
client or API adds (a request field, a stream event type) is kept raw and counted, never lost.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tests.support.agents_cli import NPM_DIR, AgentCLIs
from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.storage.reconstruct import request_body, response
from tracetap.wire.events import UNKNOWN_KEY

WIRE_NOTES = Path(__file__).with_name("WIRE_NOTES.md")
FUTURE_ANTHROPIC = {"type": "content_block_annotation", "index": 0, "note": "from a newer API"}
FUTURE_RESPONSES = {"type": "response.plan_step.added", "step": {"text": "from a newer API"}}


@pytest.mark.slow
def test_installed_cli_versions_are_the_verified_ones(agent_clis: AgentCLIs) -> None:
    """A bump of tests/e2e/npm must come with a re-verified WIRE_NOTES.md."""
    versions = agent_clis.versions()
    claude = re.search(r"\d+\.\d+\.\d+", versions["claude"])
    codex = re.search(r"\d+\.\d+\.\d+", versions["codex"])
    assert claude and codex, versions
    pinned = json.loads((NPM_DIR / "package.json").read_text())["dependencies"]
    assert pinned["@anthropic-ai/claude-code"] == claude.group()
    assert pinned["@openai/codex"] == codex.group()
    verified = re.search(r"^Verified versions: (.+)$", WIRE_NOTES.read_text(), re.MULTILINE)
    assert verified, "WIRE_NOTES.md has no 'Verified versions:' line"
    assert f"Claude Code {claude.group()}" in verified.group(1)
    assert f"Codex {codex.group()}" in verified.group(1)


@pytest.fixture
def drift(tmp_path: Path) -> Iterator[tuple[RunningProxy, ScriptedUpstream]]:
    up = ScriptedUpstream().start()
    proxy = start_proxy(
        tmp_path / "proxy",
        confdir=tmp_path / "mitm",
        anthropic_upstream=up.url,
        openai_upstream=up.url,
        admin=True,
    )
    yield proxy, up
    proxy.stop()
    up.stop()


def _metrics(proxy: RunningProxy, want: int) -> dict[tuple[str, str], float]:
    """The unknown-event counters, once they add up to `want` (stats arrive asynchronously)."""
    deadline = time.time() + 20
    counts: dict[tuple[str, str], float] = {}
    while time.time() < deadline:
        text = httpx.get(f"http://127.0.0.1:{proxy.admin_port}/metrics", timeout=10).text
        counts = {
            (api, kind): float(n)
            for api, kind, n in re.findall(
                r'^tracetap_unknown_stream_events_total\{api="([^"]+)",type="([^"]+)"\} (\S+)$',
                text,
                re.MULTILINE,
            )
        }
        if sum(counts.values()) >= want:
            return counts
        time.sleep(0.2)
    return counts


def _stored(db_url: str) -> list[tuple[m.Round, dict[str, Any], Any]]:
    engine = make_engine(db_url)
    with OrmSession(engine) as db:
        rounds = db.scalars(sa.select(m.Round).order_by(m.Round.request_at)).all()
        out = [(r, request_body(db, r), response(db, r)) for r in rounds]
    engine.dispose()
    return out


async def _over_websocket(url: str, body: dict[str, Any]) -> list[str]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "response.create", **body}))
        frames = []
        async for msg in ws:
            frames.append(msg.data)
            if json.loads(msg.data)["type"] == "response.completed":
                break
        return frames


def test_new_request_fields_and_stream_events_are_kept_and_counted(drift) -> None:
    proxy, upstream = drift
    upstream.inject = [FUTURE_ANTHROPIC]
    a_body = {
        "model": "claude-future",
        "max_tokens": 64,
        "stream": True,
        "future_request_field": {"mode": "new"},
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    with httpx.stream(
        "POST",
        proxy.anthropic_url + "/v1/messages",
        json=a_body,
        headers={"x-api-key": "sk-ant-api03-drift", "anthropic-version": "2023-06-01"},
        timeout=30,
    ) as resp:
        a_bytes = resp.read()
    assert a_bytes == upstream.requests[-1].sent_bytes  # passed through untouched

    upstream.inject = [FUTURE_RESPONSES]
    o_body = {
        "model": "gpt-future",
        "stream": True,
        "future_request_field": [1, 2],
        "tools": [{"type": "function", "name": "lookup", "parameters": {}}],
        "input": [{"role": "user", "content": "hello"}],
    }
    o_bytes = httpx.post(
        proxy.openai_url + "/v1/responses",
        json=o_body,
        headers={"authorization": "Bearer sk-drift"},
        timeout=30,
    ).content
    assert o_bytes == upstream.requests[-1].sent_bytes
    ws_url = proxy.openai_url.replace("http", "ws") + "/v1/responses"
    frames = asyncio.run(_over_websocket(ws_url, dict(o_body, stream=None)))
    assert json.loads(frames[1])["type"] == FUTURE_RESPONSES["type"]

    counts = _metrics(proxy, 3)
    assert counts == {
        ("anthropic_messages", FUTURE_ANTHROPIC["type"]): 1,
        ("openai_responses", FUTURE_RESPONSES["type"]): 2,
    }
    assert proxy.stop() == 0
    stored = _stored(proxy.db_url)
    assert [(r.api, r.transport, r.kind, r.complete) for r, _, _ in stored] == [
        ("anthropic_messages", "sse", "main", True),
        ("openai_responses", "sse", "main", True),
        ("openai_responses", "websocket", "main", True),
    ]
    for (rnd, sent, got), injected in zip(
        stored, (FUTURE_ANTHROPIC, FUTURE_RESPONSES, FUTURE_RESPONSES)
    ):
        assert sent["future_request_field"] in (a_body["future_request_field"], [1, 2])
        [kept] = got[UNKNOWN_KEY]
        assert kept["type"] == injected["type"]
        raw = json.loads(kept["data"])
        assert {k: raw[k] for k in injected} == injected  # the event's own bytes, parsed
        assert rnd.output_tokens and rnd.response_id  # the rest of the round is intact
