"""Subscription logins through forward mode: forwarded untouched, never written, still attributed.

Claude Code with an OAuth token (CLAUDE_CODE_OAUTH_TOKEN) runs for real; Codex's ChatGPT
login cannot run offline (WIRE_NOTES.md says why), so its request shape is sent by a client.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import zstandard
from sqlalchemy.orm import Session as OrmSession

from tests.support.agents_cli import AgentCLIs, run_claude
from tests.support.proxy import RunningProxy
from tests.support.scripted import FINAL_TEXT, ScriptedUpstream, self_signed
from tracetap.content import load_json
from tracetap.storage import models as m
from tracetap.storage.db import make_engine

HOSTS = ["api.anthropic.com", "api.openai.com", "chatgpt.com"]
OAUTH_TOKEN = "sk-ant-oat01-e2eSubscriptionToken0123456789abcdefABCDEF"
ACCOUNT_ID = "7f0c2a8e-acct-e2e-4b1d-9c3e5a7b9d11"


def _jwt(claims: dict[str, object]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLWUyZQ"


ACCESS_TOKEN = _jwt(
    {
        "https://api.openai.com/auth": {
            "chatgpt_account_id": ACCOUNT_ID,
            "chatgpt_plan_type": "pro",
        },
        "exp": 4102444800,
    }
)


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[ScriptedUpstream]:
    cert, key = self_signed(tmp_path / "tls", HOSTS)
    up = ScriptedUpstream().with_tls(cert, key).start()
    yield up
    up.stop()


def _forward(tracetap_proxy: Callable[..., RunningProxy], up: ScriptedUpstream) -> RunningProxy:
    rules = [f"{host}:443=127.0.0.1:{up.port}" for host in HOSTS]
    return tracetap_proxy(
        forward=True,
        extra_args=[arg for rule in rules for arg in ("--resolve", rule)] + ["--upstream-insecure"],
    )


def _assert_never_written(proxy: RunningProxy, secrets: list[str]) -> None:
    """No secret in any file the proxy wrote (store, its WAL, journal, spool, log), nor in
    any stored blob once decompressed."""
    root = proxy.journal_dir.parent
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".spool" for p in files) and any(p.suffix == ".db" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret[:12]}… written to {path}"
    engine = make_engine(proxy.db_url)
    with OrmSession(engine) as db:
        blobs = [load_json(b.codec, b.data) for b in db.scalars(sa.select(m.Blob))]
    engine.dispose()
    text = json.dumps(blobs)
    for secret in secrets:
        assert secret not in text


def _rounds(db_url: str) -> list[tuple[str, str | None, str | None, str]]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.Round.kind, m.Round.provider, m.Session.agent_session_id, m.Round.api)
            .join(m.Session, m.Session.id == m.Round.session_pk)
            .order_by(m.Round.request_at)
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.mark.slow
def test_claude_code_oauth_login_is_forwarded_and_never_stored(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    tls_upstream: ScriptedUpstream,
    tracetap_proxy: Callable[..., RunningProxy],
    mitm_confdir: Path,
) -> None:
    proxy = _forward(tracetap_proxy, tls_upstream)
    (tmp_path / "work").mkdir()
    proc = run_claude(
        agent_clis,
        None,
        tmp_path / "work",
        "Create one.txt and two.txt.",
        home=tmp_path / "home",
        env={
            "HTTPS_PROXY": f"http://127.0.0.1:{proxy.forward_port}",
            "NODE_EXTRA_CA_CERTS": str(mitm_confdir / "mitmproxy-ca-cert.pem"),
            "ANTHROPIC_API_KEY": "",  # a subscription login, no API key
            "CLAUDE_CODE_OAUTH_TOKEN": OAUTH_TOKEN,
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert FINAL_TEXT in proc.stdout
    assert proxy.stop() == 0
    calls = tls_upstream.main_loop("/v1/messages")
    assert len(calls) == 3
    for call in tls_upstream.requests:  # forwarded untouched
        assert call.headers["Authorization"] == f"Bearer {OAUTH_TOKEN}"
        assert "oauth-2025-04-20" in call.headers["anthropic-beta"].split(",")
        assert "x-api-key" not in {k.lower() for k in call.headers}
    session = calls[0].headers["X-Claude-Code-Session-Id"]
    assert _rounds(proxy.db_url) == [("main", "claude", session, "anthropic_messages")] * 3
    _assert_never_written(proxy, [OAUTH_TOKEN, OAUTH_TOKEN[14:40]])


def test_codex_chatgpt_login_shape_is_forwarded_and_never_stored(
    tls_upstream: ScriptedUpstream,
    tracetap_proxy: Callable[..., RunningProxy],
    mitm_confdir: Path,
) -> None:
    """What Codex 0.169 sends with a ChatGPT login: the chatgpt.com backend path, the access
    token as a bearer, the account header, a zstd-compressed body (WIRE_NOTES.md)."""
    proxy = _forward(tracetap_proxy, tls_upstream)
    session = str(uuid.uuid4())
    turn = str(uuid.uuid4())
    meta = {"session_id": session, "thread_id": session, "turn_id": turn, "request_kind": "turn"}
    body = {
        "model": "gpt-5-codex",
        "stream": True,
        "store": False,
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "prompt_cache_key": session,
        "client_metadata": {"session_id": session, "x-codex-turn-metadata": json.dumps(meta)},
        "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}],
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "You are Codex."}],
            },  # noqa: E501
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": "<environment_context><cwd>/home/proj</cwd></environment_context>",
                    }
                ],
            },  # noqa: E501
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "List the files."}],
            },  # noqa: E501
        ],
    }
    raw = zstandard.ZstdCompressor().compress(json.dumps(body).encode())
    headers = {
        "authorization": f"Bearer {ACCESS_TOKEN}",
        "chatgpt-account-id": ACCOUNT_ID,
        "content-type": "application/json",
        "content-encoding": "zstd",
        "accept": "text/event-stream",
        "originator": "codex_exec",
        "user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.169.0)",
        "session-id": session,
        "thread-id": session,
        "x-codex-turn-metadata": json.dumps(meta),
    }
    ca = ssl.create_default_context(cafile=str(mitm_confdir / "mitmproxy-ca-cert.pem"))
    with httpx.Client(proxy=f"http://127.0.0.1:{proxy.forward_port}", verify=ca) as client:
        got = client.post(
            "https://chatgpt.com/backend-api/codex/responses", content=raw, headers=headers
        ).content
    [call] = tls_upstream.requests
    assert call.path == "/backend-api/codex/responses" and call.raw == raw
    assert {k.lower(): v for k, v in call.headers.items()}.items() >= headers.items()
    assert got == call.sent_bytes
    deadline = time.time() + 15
    while time.time() < deadline and not _rounds(proxy.db_url):
        time.sleep(0.1)
    assert proxy.stop() == 0
    assert _rounds(proxy.db_url) == [("main", "codex", session, "openai_responses")]
    _assert_never_written(proxy, [ACCESS_TOKEN, ACCESS_TOKEN.split(".")[1], ACCOUNT_ID])
