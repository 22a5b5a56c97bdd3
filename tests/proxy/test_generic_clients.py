"""A generic OpenAI-compatible client's plain chat (no tools) is recorded as conversation rounds.

Only the coding agents' own requests without tools (titles, probes) are side requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine


@pytest.fixture
def proxy_and_upstream(
    tmp_path: Path, mitm_confdir: Path
) -> Iterator[tuple[RunningProxy, ScriptedUpstream]]:
    up = ScriptedUpstream().start()
    p = start_proxy(
        tmp_path / "proxy",
        confdir=mitm_confdir,
        anthropic_upstream=up.url,
        openai_upstream=up.url,
    )
    yield p, up
    p.stop()
    up.stop()


def _rounds(db_url: str) -> list[sa.Row]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                m.Round.response_id, m.Round.kind, m.Round.input_tokens_total, m.Round.output_tokens
            ).order_by(m.Round.request_at)
        ).all()
    engine.dispose()
    return list(rows)


def test_plain_chat_completions_are_main_rounds_with_usage(proxy_and_upstream) -> None:
    proxy, upstream = proxy_and_upstream
    client = openai.OpenAI(base_url=proxy.openai_url + "/v1", api_key="sk-generic", max_retries=0)
    history = [{"role": "user", "content": "What is a KV cache?"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=history)
    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And prefix reuse?"},
    ]
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=history,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert proxy.stop() == 0
    usage = [r.usage for r in upstream.requests]
    rows = _rounds(proxy.db_url)
    assert [(r.response_id, r.kind) for r in rows] == [
        (first.id, "main"),
        (chunks[0].id, "main"),
    ]
    assert [(r.input_tokens_total, r.output_tokens) for r in rows] == [
        (u["prompt_tokens"], u["completion_tokens"]) for u in usage
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "tracetap", "analyze", proxy.db_url, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["overview"]["all"]["llm_rounds_total"] == 2
    assert report["overview"]["all"]["total_sessions"] == 1
    total = report["tokens"]["all"]["distributions"]["total"]
    assert total["total"] == sum(u["prompt_tokens"] for u in usage)


def test_coding_agent_request_without_tools_stays_a_side_request(proxy_and_upstream) -> None:
    """Claude Code's title request (no tools, its own user agent and session header)."""
    proxy, _ = proxy_and_upstream
    resp = httpx.post(
        proxy.anthropic_url + "/v1/messages?beta=true",
        headers={
            "x-api-key": "sk-ant-api03-generic",
            "anthropic-version": "2023-06-01",
            "user-agent": "claude-cli/2.1.328 (external, cli)",
            "x-claude-code-session-id": "6d4d0a51-3f5e-4a53-9bb1-0c8a1f7b7c11",
        },
        json={
            "model": "claude-haiku-4-5",
            "max_tokens": 512,
            "messages": [{"role": "user", "content": "Summarize this in a title"}],
        },
        timeout=30,
    )
    assert resp.status_code == 200
    assert proxy.stop() == 0
    assert [(r.response_id, r.kind) for r in _rounds(proxy.db_url)] == [(resp.json()["id"], "side")]
