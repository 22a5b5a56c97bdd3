"""Protocol tests through the real proxy, with the Anthropic and OpenAI Python SDKs as clients.

Streaming and not, Messages / Responses / Chat Completions, upstream errors, a client that
disconnects mid-stream, compressed bodies, unknown endpoints; the client's bytes are the upstream's.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa
import zstandard

from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.wire.decoding import decode_body

TOOLS_A = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
TOOLS_O = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    up = ScriptedUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def proxy(
    upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProxy]:
    tmp = tmp_path_factory.mktemp("protocols")
    p = start_proxy(
        tmp / "proxy",
        confdir=tmp / "mitm",
        anthropic_upstream=upstream.url,
        openai_upstream=upstream.url,
    )
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def _fresh(upstream: ScriptedUpstream) -> None:
    upstream.reset()


def wait_round(proxy: RunningProxy, **where: Any) -> m.Round:
    """The stored round matching `where` (the writer commits asynchronously)."""
    engine = make_engine(proxy.db_url)
    deadline = time.time() + 15
    try:
        while time.time() < deadline:
            with engine.connect() as conn:
                q = sa.select(m.Round)
                for key, value in where.items():
                    q = q.where(getattr(m.Round, key) == value)
                row = conn.execute(q).first()
                if row is not None:
                    return row  # type: ignore[return-value]
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"no round with {where}")


def wait_side(proxy: RunningProxy, kind: str, **where: Any) -> Any:
    """The newest stored side request of `kind` matching `where` (written asynchronously)."""
    engine = make_engine(proxy.db_url)
    deadline = time.time() + 15
    try:
        while time.time() < deadline:
            with engine.connect() as conn:
                q = sa.select(m.SideRequest).where(m.SideRequest.kind == kind)
                for key, value in where.items():
                    q = q.where(getattr(m.SideRequest, key) == value)
                row = conn.execute(q.order_by(m.SideRequest.id.desc())).first()
                if row is not None:
                    return row
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"no {kind} side request with {where}")


def children(proxy: RunningProxy, round_pk: int) -> tuple[list[Any], list[Any]]:
    engine = make_engine(proxy.db_url)
    with engine.connect() as conn:
        tools = conn.execute(
            sa.select(m.ToolCall)
            .where(m.ToolCall.round_pk == round_pk)
            .order_by(m.ToolCall.tool_index)
        ).all()
        events = conn.execute(
            sa.select(m.TimingEvent)
            .where(m.TimingEvent.round_pk == round_pk)
            .order_by(m.TimingEvent.event_index)
        ).all()
    engine.dispose()
    return tools, events


def a_client(proxy: RunningProxy, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=proxy.anthropic_url, api_key="sk-ant-api03-proto", max_retries=0, **kw
    )


def o_client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.openai_url + "/v1", api_key="sk-proto", max_retries=0)


def test_anthropic_stream_bytes_identical_and_recorded(proxy, upstream) -> None:
    client = a_client(proxy)
    with client.messages.with_streaming_response.create(
        model="claude-proto",
        max_tokens=100,
        stream=True,
        tools=TOOLS_A,
        messages=[{"role": "user", "content": "go"}],
        extra_headers={"X-Claude-Code-Session-Id": "proto-a"},
    ) as resp:
        received = b"".join(resp.iter_bytes())
    [rec] = upstream.requests
    assert received == rec.sent_bytes  # byte for byte what the upstream sent
    rnd = wait_round(
        proxy,
        response_id=json.loads(received.split(b"data: ", 2)[1].split(b"\n")[0])["message"]["id"],
    )
    assert rnd.complete and rnd.status == 200 and rnd.kind == "main"
    assert rnd.cached_tokens == rec.usage["cache_read_input_tokens"]
    assert rnd.output_tokens == rec.usage["output_tokens"]
    assert (
        rnd.request_at
        <= rnd.upstream_first_byte_at
        <= rnd.first_token_at
        <= rnd.last_token_at
        <= rnd.end_at
    )
    assert rnd.stream_events == received.count(b"event: ")
    tools, events = children(proxy, rnd.id)
    assert [t.name for t in tools] == ["Bash"] and tools[0].call_id == "toolu_01STEP1ONE"
    assert [e.event_type for e in events] == ["user_message", "reasoning", "text", "tool_call"]


def test_anthropic_sdk_stream_helper_and_json(proxy, upstream) -> None:
    client = a_client(proxy)
    with client.messages.stream(
        model="claude-proto", max_tokens=50, messages=[{"role": "user", "content": "title?"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Short answer."
    rnd = wait_round(proxy, response_id=final.id)
    # a generic client's request without tools is a conversation turn, not a side request
    assert rnd.kind == "main" and rnd.complete and rnd.stream
    msg = client.messages.create(
        model="claude-proto",
        max_tokens=50,
        tools=TOOLS_A,
        messages=[{"role": "user", "content": "go"}],
    )
    rnd = wait_round(proxy, response_id=msg.id)
    assert not rnd.stream and rnd.complete and rnd.output_tokens == msg.usage.output_tokens
    assert rnd.input_tokens_total == (
        msg.usage.input_tokens
        + msg.usage.cache_creation_input_tokens
        + msg.usage.cache_read_input_tokens
    )
    tools, _ = children(proxy, rnd.id)
    assert [t.call_id for t in tools] == [b.id for b in msg.content if b.type == "tool_use"]


def test_count_tokens_is_a_side_request(proxy, upstream) -> None:
    n = a_client(proxy).messages.count_tokens(
        model="claude-proto", messages=[{"role": "user", "content": "hi"}]
    )
    assert wait_side(proxy, "count_tokens").input_tokens == n.input_tokens


def test_anthropic_error_midstream(proxy, upstream) -> None:
    upstream.fault = "error_midstream"
    with pytest.raises(anthropic.APIStatusError):
        with a_client(proxy).messages.stream(
            model="claude-proto",
            max_tokens=50,
            tools=TOOLS_A,
            messages=[{"role": "user", "content": "x"}],
        ) as s:
            s.get_final_message()
    [rec] = upstream.requests
    first = json.loads(rec.sent[0][1].split(b"data: ")[1])
    rnd = wait_round(proxy, response_id=first["message"]["id"])
    assert not rnd.complete and rnd.error_type == "overloaded_error" and rnd.status == 200


def test_anthropic_http_error_is_recorded(proxy, upstream) -> None:
    upstream.fault = "http_529"
    with pytest.raises(anthropic.APIStatusError) as err:
        a_client(proxy).messages.create(
            model="claude-proto",
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Claude-Code-Session-Id": "e529"},
        )
    assert err.value.status_code == 529
    rnd = wait_round(proxy, status=529)
    assert rnd.error_type == "overloaded_error" and not rnd.complete


def test_client_disconnect_keeps_partial_round(proxy, upstream) -> None:
    upstream.fault = "slow"
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            proxy.anthropic_url + "/v1/messages",
            json={
                "model": "claude-proto",
                "max_tokens": 50,
                "stream": True,
                "tools": TOOLS_A,
                "messages": [{"role": "user", "content": "go"}],
            },
            headers={"x-api-key": "k", "X-Claude-Code-Session-Id": "disc"},
        ) as resp:
            got = b""
            for chunk in resp.iter_bytes():
                got += chunk
                if got.count(b"\n\n") >= 4:
                    break  # leave mid-stream
    first = json.loads(got.split(b"data: ")[1].split(b"\n")[0])
    rnd = wait_round(proxy, response_id=first["message"]["id"])
    assert not rnd.complete and rnd.error_type == "client_disconnected"
    assert rnd.first_token_at is not None and rnd.end_at >= rnd.first_token_at
    _, events = children(proxy, rnd.id)
    assert "reasoning" in [e.event_type for e in events]  # output seen so far is kept


def test_upstream_connection_cut(proxy, upstream) -> None:
    upstream.fault = "cut"
    with httpx.Client(timeout=30) as client:
        with pytest.raises(httpx.HTTPError):
            with client.stream(
                "POST",
                proxy.anthropic_url + "/v1/messages",
                json={
                    "model": "claude-proto",
                    "max_tokens": 50,
                    "stream": True,
                    "tools": TOOLS_A,
                    "messages": [{"role": "user", "content": "go"}],
                },
                headers={"x-api-key": "k"},
            ) as resp:
                b"".join(resp.iter_bytes())
    [rec] = upstream.requests
    first = json.loads(rec.sent[0][1].split(b"data: ")[1])
    rnd = wait_round(proxy, response_id=first["message"]["id"])
    assert not rnd.complete and rnd.error_type in ("connection_error", "client_disconnected")


def test_openai_responses_stream_and_json(proxy, upstream) -> None:
    client = o_client(proxy)
    with client.responses.with_streaming_response.create(
        model="gpt-proto",
        input="go",
        tools=TOOLS_O,
        stream=True,
        extra_headers={"session_id": "proto-o"},
    ) as resp:
        received = b"".join(resp.iter_bytes())
    [rec] = upstream.requests
    assert received == rec.sent_bytes
    resp_id = json.loads(received.split(b"data: ", 2)[1].split(b"\n")[0])["response"]["id"]
    rnd = wait_round(proxy, response_id=resp_id)
    assert rnd.provider == "openai" and rnd.complete and rnd.api == "openai_responses"
    assert rnd.input_tokens_total == rec.usage["input_tokens"]
    assert rnd.reasoning_tokens == rec.usage["output_tokens_details"]["reasoning_tokens"]
    tools, _ = children(proxy, rnd.id)
    assert [t.call_id for t in tools] == [c[0] for c in rec.tool_calls]
    upstream.reset()
    final = client.responses.create(model="gpt-proto", input="hello")
    rnd = wait_round(proxy, response_id=final.id)
    assert not rnd.stream and rnd.complete and rnd.output_tokens == final.usage.output_tokens


def test_openai_responses_failed_midstream(proxy, upstream) -> None:
    upstream.fault = "error_midstream"
    client = o_client(proxy)
    events = list(client.responses.create(model="gpt-proto", input="hello", stream=True))
    assert events[-1].type == "response.failed"
    rnd = wait_round(proxy, response_id=events[0].response.id)
    assert not rnd.complete and rnd.error_type == "server_error"


def test_chat_completions_stream_and_json(proxy, upstream) -> None:
    client = o_client(proxy)
    tools = [
        {"type": "function", "function": {"name": "lookup", "parameters": {}}},
        {"type": "function", "function": {"name": "fetch", "parameters": {}}},
    ]
    stream = client.chat.completions.create(
        model="gpt-proto",
        messages=[{"role": "user", "content": "go"}],
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    rnd = wait_round(proxy, response_id=chunks[0].id)
    assert rnd.api == "openai_chat" and rnd.complete
    assert rnd.input_tokens_total == chunks[-1].usage.prompt_tokens
    tools_rec, _ = children(proxy, rnd.id)
    assert [(t.call_id, t.name) for t in tools_rec] == [
        ("call_chat_a", "lookup"),
        ("call_chat_b", "fetch"),
    ]
    done = client.chat.completions.create(
        model="gpt-proto", messages=[{"role": "user", "content": "go"}]
    )
    rnd = wait_round(proxy, response_id=done.id)
    assert not rnd.stream and rnd.complete and rnd.output_tokens == done.usage.completion_tokens


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compressed_response_streams_pass_through_and_are_parsed(
    proxy, upstream, encoding: str
) -> None:
    upstream.response_encoding = encoding
    try:
        with httpx.Client(timeout=30) as client:
            with client.stream(
                "POST",
                proxy.anthropic_url + "/v1/messages",
                json={
                    "model": "claude-proto",
                    "max_tokens": 50,
                    "stream": True,
                    "tools": TOOLS_A,
                    "messages": [{"role": "user", "content": "go"}],
                },
                headers={"x-api-key": "k", "accept-encoding": encoding},
            ) as resp:
                assert resp.headers["content-encoding"] == encoding
                raw = b"".join(resp.iter_raw())
    finally:
        upstream.response_encoding = None
    [rec] = upstream.requests
    assert raw == rec.sent_bytes  # still compressed, byte for byte
    plain = decode_body(raw, encoding)
    msg_id = json.loads(plain.split(b"data: ", 2)[1].split(b"\n")[0])["message"]["id"]
    rnd = wait_round(proxy, response_id=msg_id)
    assert rnd.complete and rnd.output_tokens == rec.usage["output_tokens"]
    tools, _ = children(proxy, rnd.id)
    assert [t.call_id for t in tools] == [c[0] for c in rec.tool_calls]


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compressed_request_bodies_pass_through_and_are_parsed(
    proxy, upstream, encoding: str
) -> None:
    body = json.dumps(
        {
            "model": "claude-proto",
            "max_tokens": 5,
            "stream": False,
            "messages": [{"role": "user", "content": f"packed {encoding}"}],
        }
    ).encode()
    packed = gzip.compress(body) if encoding == "gzip" else zstandard.compress(body)
    resp = httpx.post(
        proxy.anthropic_url + "/v1/messages",
        content=packed,
        timeout=30,
        headers={
            "content-encoding": encoding,
            "content-type": "application/json",
            "x-api-key": "k",
        },
    )
    assert resp.status_code == 200
    [rec] = upstream.requests
    assert rec.raw == packed  # the upstream got the compressed bytes untouched
    rnd = wait_round(proxy, response_id=resp.json()["id"])
    assert rnd.msg_count == 1 and rnd.request_bytes == len(body)


def test_unknown_endpoint_and_malformed_json_pass_through(proxy, upstream) -> None:
    resp = httpx.get(proxy.openai_url + "/v1/models", timeout=30)
    assert resp.status_code == 200 and resp.json() == {"object": "list", "data": []}
    bad = httpx.post(
        proxy.anthropic_url + "/v1/messages",
        content=b"{not json",
        timeout=30,
        headers={"content-type": "application/json", "x-api-key": "k"},
    )
    assert bad.status_code == 200  # the scripted upstream answers anything; we pass it through
    assert upstream.requests[-1].raw == b"{not json"
    rnd = wait_round(proxy, response_id=bad.json()["id"])
    assert rnd.msg_count == 0
    assert wait_side(proxy, "unrecognized", path="/v1/models").method == "GET"
