"""The real CLIs through `tracetap proxy` in forward mode (HTTPS_PROXY and the mitmproxy CA).

The API hosts resolve to a local TLS scripted upstream; the records must be those reverse
mode makes of the same run, the bytes the client gets the upstream's, other hosts tunnelled.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.agents_cli import AgentCLIs, run_claude, run_codex
from tests.support.proxy import RunningProxy
from tests.support.scripted import FINAL_TEXT, ScriptedUpstream, self_signed
from tracetap.storage import models as m
from tracetap.storage.db import make_engine

pytestmark = pytest.mark.slow

HOSTS = ["api.anthropic.com", "api.openai.com", "chatgpt.com", "tunnel.example"]


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


def _export(db: str, out: Path) -> list[dict[str, Any]]:
    subprocess.run(
        [sys.executable, "-m", "tracetap", "export", "tracelab", "--db", db, "-o", str(out)]
        + ["--extended", "--kind", "all"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return [json.loads(line) for line in out.read_text().splitlines()]


def _shape(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a run records that does not depend on ids, clocks or paths."""
    return [
        (
            r["provider"],
            r["tt_kind"],
            r["round_index"],
            r["tt_complete"],
            r["project"],
            r["first_input_event_type"],
            r["current_user_message_count"],
            r["current_tool_result_count"],
            [(t["tool_call_id"], t["tool_name"]) for t in r["tools"]],
            [e["event_type"] for e in r["timing_events"]],
            r["output_tokens"],
        )
        for r in rows
    ]


def _usage_matches(rows: list[dict[str, Any]], up: ScriptedUpstream, path: str) -> None:
    """Every recorded round's tokens are what the upstream reported for that request."""
    reported = [
        r.usage
        for r in up.main_loop(path)
        if r.body.get("generate") is not False and r.body.get("model") != "claude-fwd"
    ]
    assert len(rows) == len(reported)
    for row, usage in zip(rows, reported):
        if "cache_read_input_tokens" in usage:
            assert row["prefix_tokens"] == usage["cache_read_input_tokens"]
            assert row["input_tokens_total"] == (
                usage["input_tokens"]
                + usage["cache_creation_input_tokens"]
                + usage["cache_read_input_tokens"]
            )
        else:
            assert row["input_tokens_total"] == usage["input_tokens"]
            assert row["prefix_tokens"] == usage["input_tokens_details"]["cached_tokens"]


def _side_hosts(db: str) -> list[tuple[str, str]]:
    engine = make_engine(db)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(m.SideRequest.host, m.SideRequest.path)).all()
    engine.dispose()
    return [(h, p) for h, p in rows]


def test_claude_code_through_https_proxy_records_what_reverse_mode_does(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    tls_upstream: ScriptedUpstream,
    scripted_upstream: ScriptedUpstream,
    tracetap_proxy: Callable[..., RunningProxy],
    mitm_confdir: Path,
) -> None:
    ca = mitm_confdir / "mitmproxy-ca-cert.pem"
    fwd = _forward(tracetap_proxy, tls_upstream)
    (tmp_path / "fwd" / "work").mkdir(parents=True)
    proc = run_claude(
        agent_clis,
        None,  # the default https://api.anthropic.com, as a user's install has it
        tmp_path / "fwd" / "work",
        "Create one.txt and two.txt.",
        home=tmp_path / "fwd" / "home",
        env={
            "HTTPS_PROXY": f"http://127.0.0.1:{fwd.forward_port}",
            "NODE_EXTRA_CA_CERTS": str(ca),
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert FINAL_TEXT in proc.stdout
    assert {r.headers["Host"] for r in tls_upstream.requests} == {"api.anthropic.com"}

    # another client through the same proxy: the bytes it gets are the upstream's; a host
    # that is not a model API is tunnelled (the upstream's own certificate) and not recorded
    proxy_url = f"http://127.0.0.1:{fwd.forward_port}"
    with httpx.Client(proxy=proxy_url, verify=ssl.create_default_context(cafile=str(ca))) as c:
        got = c.post(
            "https://api.anthropic.com/v1/messages",
            headers={"x-api-key": "sk-ant-api03-fwd", "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-fwd",
                "max_tokens": 20,
                "stream": True,
                "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
                "messages": [{"role": "user", "content": "hi"}],
            },
        ).content
    assert got == tls_upstream.requests[-1].sent_bytes
    up_cert = tls_upstream.tls[0] if tls_upstream.tls else None
    with httpx.Client(proxy=proxy_url, verify=ssl.create_default_context(cafile=str(up_cert))) as c:
        assert c.get("https://tunnel.example/hello").status_code == 404  # the upstream's answer
    assert tls_upstream.requests[-1].headers["Host"] == "tunnel.example"
    assert fwd.stop() == 0

    rev = tracetap_proxy(anthropic_upstream=scripted_upstream.url)
    (tmp_path / "rev" / "work").mkdir(parents=True)
    proc = run_claude(
        agent_clis,
        rev.anthropic_url,
        tmp_path / "rev" / "work",
        "Create one.txt and two.txt.",
        home=tmp_path / "rev" / "home",
    )
    assert proc.returncode == 0, proc.stderr
    assert rev.stop() == 0

    fwd_rows = _export(fwd.db_url, tmp_path / "fwd.jsonl")
    rev_rows = _export(rev.db_url, tmp_path / "rev.jsonl")
    fwd_main = [r for r in fwd_rows if r["model"] != "claude-fwd"]  # the CLI's own rounds
    assert len(fwd_main) == 3
    assert _shape(fwd_main) == _shape(rev_rows)
    _usage_matches(fwd_main, tls_upstream, "/v1/messages")
    _usage_matches(rev_rows, scripted_upstream, "/v1/messages")
    session = tls_upstream.main_loop("/v1/messages")[0].headers["X-Claude-Code-Session-Id"]
    assert {r["session_id"] for r in fwd_main} == {f"claude:{session}"}
    # Claude Code's settings fetches on api.anthropic.com are kept apart, never as rounds;
    # nothing of the tunnelled host is recorded
    sides = _side_hosts(fwd.db_url)
    assert {h for h, _ in sides} == {"api.anthropic.com"}
    assert all(p.startswith("/api/claude_code/") for _, p in sides)


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_codex_through_https_proxy_records_what_reverse_mode_does(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    tls_upstream: ScriptedUpstream,
    scripted_upstream: ScriptedUpstream,
    tracetap_proxy: Callable[..., RunningProxy],
    mitm_confdir: Path,
    transport: str,
) -> None:
    ca = mitm_confdir / "mitmproxy-ca-cert.pem"
    ws = transport == "websocket"
    fwd = _forward(tracetap_proxy, tls_upstream)
    (tmp_path / "fwd" / "work").mkdir(parents=True)
    proc = run_codex(
        agent_clis,
        "https://api.openai.com",
        tmp_path / "fwd" / "work",
        "Create one.txt and two.txt.",
        home=tmp_path / "fwd" / "home",
        websockets=ws,
        env={
            "HTTPS_PROXY": f"http://127.0.0.1:{fwd.forward_port}",
            "CODEX_CA_CERTIFICATE": str(ca),
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert FINAL_TEXT in proc.stdout + proc.stderr
    model_calls = tls_upstream.main_loop("/v1/responses")
    assert {r.headers["Host"] for r in model_calls} == {"api.openai.com"}
    assert fwd.stop() == 0

    rev = tracetap_proxy(openai_upstream=scripted_upstream.url)
    (tmp_path / "rev" / "work").mkdir(parents=True)
    proc = run_codex(
        agent_clis,
        rev.openai_url,
        tmp_path / "rev" / "work",
        "Create one.txt and two.txt.",
        home=tmp_path / "rev" / "home",
        websockets=ws,
    )
    assert proc.returncode == 0, proc.stderr
    assert rev.stop() == 0

    fwd_rows = [r for r in _export(fwd.db_url, tmp_path / "f.jsonl") if r["tt_kind"] == "main"]
    rev_rows = [r for r in _export(rev.db_url, tmp_path / "r.jsonl") if r["tt_kind"] == "main"]
    assert len(fwd_rows) == 3 and {r["tt_transport"] for r in fwd_rows} == {transport}
    assert _shape(fwd_rows) == _shape(rev_rows)
    _usage_matches(fwd_rows, tls_upstream, "/v1/responses")
    _usage_matches(rev_rows, scripted_upstream, "/v1/responses")
    # Codex's other calls (its plugin list on chatgpt.com) are kept apart, never as rounds
    others = {(r.headers["Host"], r.path) for r in tls_upstream.requests} - {
        (r.headers["Host"], r.path) for r in model_calls
    }
    assert set(_side_hosts(fwd.db_url)) == others
