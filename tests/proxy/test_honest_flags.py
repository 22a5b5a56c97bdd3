"""Honest flags end to end: through a real `tracetap proxy` to the scripted upstream, a stream
over the cap, cut by a clean EOF or a reset, a request over the cap or undecodable, and an
unrecognized endpoint are each stored with `complete`, `truncated`, `error_type` and sizes
that say what happened, while the client still gets every byte the upstream sent."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import sqlalchemy as sa

from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.wire.faults import ENDED_EARLY, REQUEST_OVER_CAP, RESPONSE_OVER_CAP

SMALL_CAP = 65536
TOOLS_A = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
TOOLS_O = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]
TOOLS_C = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
TERMINAL = {
    "anthropic_messages": b"event: message_stop\n",
    "openai_responses": b"event: response.completed\n",
    "openai_chat": b"data: [DONE]\n",
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    up = ScriptedUpstream().start()
    yield up
    up.stop()


def _proxy(
    upstream: ScriptedUpstream, tmp: pytest.TempPathFactory, name: str, *args: str
) -> RunningProxy:
    d = tmp.mktemp(name)
    return start_proxy(
        d / "proxy",
        confdir=d / "mitm",
        anthropic_upstream=upstream.url,
        openai_upstream=upstream.url,
        extra_args=list(args),
    )


@pytest.fixture(scope="module")
def proxy(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    p = _proxy(upstream, tmp_path_factory, "flags")
    yield p
    p.stop()


@pytest.fixture(scope="module")
def small_cap(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    p = _proxy(upstream, tmp_path_factory, "flags-cap", "--max-body", str(SMALL_CAP))
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def _fresh(upstream: ScriptedUpstream) -> None:
    upstream.reset()


def _request(api: str, session: str, **extra: Any) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(path, body, headers) of a streamed request to `api`, in session `session`."""
    if api == "anthropic_messages":
        body = {
            "model": "claude-flags",
            "max_tokens": 50,
            "stream": True,
            "tools": TOOLS_A,
            "messages": [{"role": "user", "content": "go"}],
        }
        return "/v1/messages", body | extra, {"x-claude-code-session-id": session}
    if api == "openai_responses":
        body = {"model": "gpt-flags", "input": "go", "tools": TOOLS_O, "stream": True}
        return "/v1/responses", body | extra, {"session_id": session}
    body = {
        "model": "gpt-flags",
        "stream": True,
        "tools": TOOLS_C,
        "messages": [{"role": "user", "content": "go"}],
    }
    return "/v1/chat/completions", body | extra, {"session_id": session}


def send(
    proxy: RunningProxy,
    path: str,
    *,
    content: bytes,
    headers: dict[str, str],
    base: str | None = None,
) -> bytes:
    """POST through the proxy; every body byte the client got, also when the stream breaks."""
    url = (base or (proxy.anthropic_url if path == "/v1/messages" else proxy.openai_url)) + path
    got = bytearray()
    with httpx.Client(timeout=60) as client:
        try:
            with client.stream(
                "POST",
                url,
                content=content,
                headers={"content-type": "application/json", "x-api-key": "k", **headers},
            ) as resp:
                for chunk in resp.iter_raw():
                    got += chunk
        except httpx.RemoteProtocolError:  # the upstream's cut, passed on
            pass
    return bytes(got)


def stream(proxy: RunningProxy, api: str, session: str, **extra: Any) -> bytes:
    path, body, headers = _request(api, session, **extra)
    return send(proxy, path, content=json.dumps(body).encode(), headers=headers)


def stored(proxy: RunningProxy, session: str) -> Any:
    """The round stored for `session` (the writer commits asynchronously)."""
    engine = make_engine(proxy.db_url)
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.select(m.Round)
                    .join(m.Session, m.Session.id == m.Round.session_pk)
                    .where(m.Session.agent_session_id == session)
                ).first()
            if row is not None:
                return row
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"no round in session {session}")


def flags(rnd: Any) -> tuple[bool, bool, str | None]:
    return rnd.complete, rnd.truncated, rnd.error_type


def test_event_over_the_default_cap_keeps_a_true_prefix(proxy, upstream) -> None:
    """The probe's case: one 17 MB event in a stream, over the 16 MiB cap. The round holds the
    events before it, is truncated and not complete; no text spliced across the gap, and the
    last events (message_stop above all) after it are not in the round."""
    upstream.pad = 17_000_000
    got = stream(proxy, "anthropic_messages", "over-default")
    [rec] = upstream.requests
    assert got == rec.sent_bytes
    rnd = stored(proxy, "over-default")
    assert flags(rnd) == (False, True, RESPONSE_OVER_CAP)
    big = next(i for i, (_, chunk) in enumerate(rec.sent) if len(chunk) > 1_000_000)
    assert rnd.stream_events == big  # the events wholly before the large one, none after
    assert rnd.response_bytes == len(got)


def test_event_over_a_small_cap(small_cap, upstream) -> None:
    upstream.pad = SMALL_CAP + 1000  # just over: the old tap kept the small chunks after it
    got = stream(small_cap, "anthropic_messages", "over-small")
    [rec] = upstream.requests
    assert got == rec.sent_bytes
    rnd = stored(small_cap, "over-small")
    assert flags(rnd) == (False, True, RESPONSE_OVER_CAP)
    big = next(i for i, (_, chunk) in enumerate(rec.sent) if len(chunk) > SMALL_CAP)
    assert rnd.stream_events == big and rnd.response_bytes == len(got)


def test_request_over_the_cap_keeps_sizes_and_no_content(small_cap, upstream) -> None:
    path, body, headers = _request(
        "anthropic_messages", "req-over", messages=[{"role": "user", "content": "y" * 100_000}]
    )
    raw = json.dumps(body).encode()
    got = send(small_cap, path, content=raw, headers=headers)
    [rec] = upstream.requests
    assert rec.raw == raw and got == rec.sent_bytes  # both sides got every byte
    rnd = stored(small_cap, "req-over")
    assert flags(rnd) == (False, True, REQUEST_OVER_CAP)
    assert rnd.request_bytes == len(raw) and rnd.msg_count == 0
    assert rnd.response_bytes == len(got) and rnd.stream_events == got.count(b"event: ")


def test_request_literal_in_the_proxy_is_the_wire_fault() -> None:
    """tracetap.proxy.capture writes REQUEST_OVER_CAP as a literal."""
    from tracetap.proxy import capture

    with open(capture.__file__, encoding="utf-8") as fh:
        assert f'"{REQUEST_OVER_CAP}"' in fh.read()


STREAM_APIS = ["anthropic_messages", "openai_responses", "openai_chat"]


@pytest.mark.parametrize("fault", ["eof", "close"])
@pytest.mark.parametrize("api", STREAM_APIS)
def test_clean_eof_before_the_final_event_is_named(proxy, upstream, api: str, fault: str) -> None:
    """The upstream ends the response (eof) or closes a response framed by the connection's
    end (close) after some events: the exchange ends without an error, the stream without its
    final event."""
    for cut in (0, 3):
        upstream.reset()
        upstream.fault, upstream.cut_after = fault, cut
        session = f"{fault}-{api}-{cut}"
        got = stream(proxy, api, session)
        [rec] = upstream.requests
        assert got == rec.sent_bytes and len(rec.sent) == cut
        rnd = stored(proxy, session)
        assert flags(rnd) == (False, False, ENDED_EARLY), session
        assert rnd.response_bytes == len(got)


@pytest.mark.parametrize("api", STREAM_APIS)
def test_reset_at_every_point_is_never_complete_before_the_final_event(
    proxy, upstream, api: str
) -> None:
    """Upstream resets at each point of the stream, up to after its last event: the round is
    complete exactly when the client got the final event; otherwise it names the transport
    error mitmproxy reported."""
    upstream.fault, upstream.cut_after = "reset", 10_000  # never: count the events first
    stream(proxy, api, f"reset-{api}-all")
    total = len(upstream.requests[-1].sent)
    for cut in range(total + 1):
        upstream.reset()
        upstream.fault, upstream.cut_after = "reset", cut
        session = f"reset-{api}-{cut}"
        got = stream(proxy, api, session)
        [rec] = upstream.requests
        assert got == rec.sent_bytes
        rnd = stored(proxy, session)
        if TERMINAL[api] in got:
            assert flags(rnd) == (True, False, None), session
        else:
            assert flags(rnd) == (False, False, "connection_error"), session
            assert "peer closed connection" in rnd.error_message
        assert rnd.response_bytes == len(got)


CORRUPT = {
    "zstd": b"\x28\xb5\x2f\xfd\x00garbage that is not a zstd frame",
    "gzip": b"\x1f\x8b\x08\x00garbage that is not deflate data",
    "br": b"\xff\xff\xff\xffgarbage that is not brotli",
}


@pytest.mark.parametrize("encoding", list(CORRUPT) + ["gzip-cut"])
def test_undecodable_request_body_is_named(proxy, upstream, encoding: str) -> None:
    if encoding == "gzip-cut":  # a compressed body that stops before its end
        encoding, packed = "gzip", gzip.compress(b'{"model": "m", "messages": []}' * 20)[:40]
        reason = "request body: truncated gzip data"
    else:
        packed, reason = CORRUPT[encoding], f"request body: invalid {encoding} data"
    session = f"corrupt-{encoding}-{len(packed)}"
    got = send(
        proxy,
        "/v1/messages",
        content=packed,
        headers={"content-encoding": encoding, "x-claude-code-session-id": session},
    )
    [rec] = upstream.requests
    assert rec.raw == packed and got == rec.sent_bytes
    rnd = stored(proxy, session)
    assert flags(rnd) == (False, False, reason)
    assert rnd.request_bytes == len(packed) and rnd.msg_count == 0


def test_unrecognized_endpoint_counts_the_response_bytes(proxy, upstream) -> None:
    got = send(proxy, "/v1/embeddings", content=b'{"input": "x"}', headers={})
    [rec] = upstream.requests
    assert got == rec.sent_bytes and len(got) > 0
    engine = make_engine(proxy.db_url)
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.select(m.SideRequest).where(
                        m.SideRequest.kind == "unrecognized", m.SideRequest.path == "/v1/embeddings"
                    )
                ).first()
            if row is not None:
                break
            time.sleep(0.05)
    finally:
        engine.dispose()
    assert row is not None
    assert (row.response_bytes, row.request_bytes) == (len(got), len(b'{"input": "x"}'))


def test_websocket_round_is_complete_and_whole(proxy, upstream) -> None:
    """Responses over a WebSocket: framed as messages arrive, never taken for a cut stream."""

    async def run() -> list[str]:
        frames: list[str] = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                proxy.openai_url + "/v1/responses", headers={"session_id": "ws-whole"}
            ) as ws:
                create = {"type": "response.create", "model": "gpt-flags", "input": "go"}
                await ws.send_str(json.dumps(create))
                async for msg in ws:
                    frames.append(msg.data)
                    if '"response.completed"' in msg.data:
                        break
        return frames

    frames = asyncio.run(run())
    [rec] = upstream.requests
    assert [f.encode() for f in frames] == [chunk for _, chunk in rec.sent]
    rnd = stored(proxy, "ws-whole")
    assert flags(rnd) == (True, False, None) and rnd.transport == "websocket"
    assert rnd.response_bytes == sum(map(len, frames))
