"""Fuzzed request bodies through a real `tracetap proxy`: valid JSON of any shape, message-like
JSON with odd values, invalid JSON, random bytes, and each of them gzip-, zstd- or
brotli-compressed (whole, truncated, or labelled compressed when it is not). The pass-through
never fails (the upstream gets the client's bytes, the client the upstream's), and every
exchange is stored, as a round or a side request."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
import zstandard
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.reliability.traffic import (
    stop_in_time,
    stored_quarantine,
    stored_rounds,
    stored_sides,
)
from tests.support.proxy import start_proxy
from tests.support.scripted import ThreadedUpstream


class TolerantUpstream(ThreadedUpstream):
    """Answers every POST, whatever its body, with a small Anthropic message (JSON, or SSE when
    the request has `x-fuzz-stream: 1`) whose id is also in the `x-fuzz-id` header; keeps what
    it received and what it sent by that id."""

    client_max_size = 64 * 1024 * 1024

    def __init__(self) -> None:
        self.received: dict[str, bytes] = {}
        self.sent: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        super().__init__()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        msg_id = f"msg_fuzz{next(self._ids):04d}"
        self.received[msg_id] = raw
        usage = {"input_tokens": 7, "output_tokens": 3}
        message = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": "claude-fuzz",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if request.headers.get("x-fuzz-stream") != "1":
            body = json.dumps(message).encode()
            self.sent[msg_id] = body
            return web.Response(
                body=body, content_type="application/json", headers={"x-fuzz-id": msg_id}
            )
        events = [
            ("message_start", {"type": "message_start", "message": dict(message, content=[])}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "ok"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        chunks = [f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events]
        self.sent[msg_id] = b"".join(chunks)
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "x-fuzz-id": msg_id}
        )
        await resp.prepare(request)
        for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
        return resp


@pytest.fixture
def tolerant_upstream() -> Iterator[TolerantUpstream]:
    up = TolerantUpstream().start()
    yield up
    up.stop()


# -- bodies ----------------------------------------------------------------------------------
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
_block = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "tool_use", "tool_result", "image", "thinking", "?"])},
    optional={
        "text": _json,
        "id": _json,
        "name": _json,
        "input": _json,
        "content": _json,
        "tool_use_id": _json,
    },
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", ""]) | _json},
    optional={"content": st.text(max_size=60) | st.lists(_block | _json, max_size=4) | _json},
)
_request = st.fixed_dictionaries(
    {},
    optional={
        "model": st.text(max_size=20) | _json,
        "max_tokens": st.integers() | _json,
        "messages": st.lists(_message | _json, max_size=4) | _json,
        "system": st.text(max_size=60) | st.lists(_block, max_size=3) | _json,
        "tools": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=10) | _json},
                optional={"input_schema": _json, "description": _json},
            ),
            max_size=3,
        )
        | _json,
        "stream": st.booleans() | _json,
        "metadata": _json,
    },
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


_plain = st.one_of(
    _json.map(_dumps),  # valid JSON, any shape
    _request.map(_dumps),  # message-like, odd values
    _request.map(_dumps).flatmap(  # invalid JSON: valid JSON cut short
        lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda n: b[:n])
    ),
    st.text(max_size=200).map(str.encode),  # text, mostly not JSON
    st.binary(max_size=2000),  # random bytes
)


def _compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "br":
        return brotli.compress(body)  # type: ignore[no-any-return]
    return zstandard.ZstdCompressor().compress(body)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """(request bytes, content-encoding)."""
    body = draw(_plain)
    how = draw(st.sampled_from(["plain", "compressed", "truncated", "mislabelled"]))
    if how == "plain":
        return body, None
    encoding = draw(st.sampled_from(["gzip", "zstd", "br"]))
    if how == "mislabelled":  # says compressed, is not
        return body, encoding
    packed = _compress(body, encoding)
    if how == "truncated":
        packed = packed[: draw(st.integers(0, max(0, len(packed) - 1)))]
    return packed, encoding


# Found by this test: a request whose "model" is not a string (a list or an object) passes
# through, but its round cannot be written (SQLite: "Error binding parameter 10: type 'list' is
# not supported", the adapter's model_requested) and lands in the quarantine table instead.
NOT_A_STRING_MODEL = json.dumps(
    {"model": [], "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
).encode()


def test_fuzzed_request_bodies_pass_through_and_are_stored(
    tmp_path: Path, tolerant_upstream: TolerantUpstream, mitm_confdir: Path
) -> None:
    proxy = start_proxy(tmp_path, confdir=mitm_confdir, anthropic_upstream=tolerant_upstream.url)
    sent: list[str] = []  # the upstream's id of every request sent
    how: dict[str, str] = {}  # id -> what was sent, for the failure message
    client = httpx.Client(base_url=proxy.anthropic_url, timeout=30)

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=_bodies(), stream=st.booleans(), session=st.integers(0, 3))
    @example(body=(NOT_A_STRING_MODEL, None), stream=False, session=0)
    def one(body: tuple[bytes, str | None], stream: bool, session: int) -> None:
        raw, encoding = body
        headers = {
            "content-type": "application/json",
            "x-api-key": "sk-ant-api03-fuzz",
            "anthropic-version": "2023-06-01",
            "X-Claude-Code-Session-Id": f"fuzz-{session}",
        }
        if encoding:
            headers["content-encoding"] = encoding
        if stream:
            headers["x-fuzz-stream"] = "1"
        answer = client.post("/v1/messages", content=raw, headers=headers)
        msg_id = answer.headers.get("x-fuzz-id")
        assert answer.status_code == 200, (answer.status_code, answer.text[:500])
        assert msg_id is not None
        sent.append(msg_id)
        how[msg_id] = f"{encoding or 'plain'} {'sse' if stream else 'json'} {raw[:300]!r}"
        assert tolerant_upstream.received[msg_id] == raw  # passed through unchanged
        assert answer.content == tolerant_upstream.sent[msg_id]  # and back

    try:
        one()
    finally:
        client.close()
        took = stop_in_time(proxy)
    rounds = stored_rounds(proxy.db_url)
    sides = stored_sides(proxy.db_url)
    print(f"{len(sent)} sent, {len(rounds)} rounds, side requests {sides}; stopped in {took:.1f} s")
    assert len(rounds) == len(set(rounds))
    assert set(rounds) <= set(sent)  # a round's id is its response's
    unstored = {i: how[i] for i in sent if i not in set(rounds)}
    quarantined = stored_quarantine(proxy.db_url)
    assert len(rounds) + len(sides) + len(quarantined) == len(sent), (  # nothing vanished
        f"{len(sent)} sent, {len(rounds)} rounds, side requests {sides}, quarantined "
        f"{quarantined}; not rounds: {unstored}"
    )
    assert len(rounds) + len(sides) == len(sent), (
        f"{len(sent)} sent, {len(rounds)} rounds, side requests {sides}, quarantined "
        f"{quarantined}; not rounds: {unstored}"
    )
