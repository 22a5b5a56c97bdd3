"""Honest flags from raw wire bytes through framing and the adapters, as ingest runs them:
`complete`, `truncated` and `error_type` say what happened to a stream cut at the cap, cut
short, or sent with an error, and to a request body cut at the cap or undecodable."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import brotli
import pytest
import zstandard

from tests.wire.test_adapters import (
    ANTHROPIC_REQUEST,
    RESPONSES_REQUEST,
    anthropic_events,
    responses_events,
)
from tracetap.model import Exchange, Round, StreamEvent
from tracetap.wire.adapters import by_name
from tracetap.wire.decoding import decode_body
from tracetap.wire.faults import ENDED_EARLY, REQUEST_OVER_CAP, RESPONSE_OVER_CAP
from tracetap.wire.frames import frame_exchange

CHAT_REQUEST = {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
_CHAT = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4.1"}


def chat_events() -> list[tuple[str | None, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return dict(_CHAT, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    return [
        (None, chunk({"role": "assistant", "content": "Hel"})),
        (None, chunk({"content": "lo"})),
        (None, chunk({}, "stop")),
        (None, "[DONE]"),
    ]


# api -> (request body, path, the stream's events as the API sends them)
STREAMS = {
    "anthropic_messages": (ANTHROPIC_REQUEST, "/v1/messages", anthropic_events),
    "openai_responses": (RESPONSES_REQUEST, "/v1/responses", responses_events),
    "openai_chat": (CHAT_REQUEST, "/v1/chat/completions", chat_events),
}


def sse(events: list[tuple[str | None, Any]]) -> list[bytes]:
    """Each event's bytes as the API writes them (Chat Completions sends no `event:` line)."""
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        out.append((f"event: {name}\n" if name else "").encode() + f"data: {payload}\n\n".encode())
    return out


def recorded(
    api: str,
    wire: list[bytes],
    *,
    kept: int | None = None,
    encoding: str | None = None,
    error: str | None = None,
    **kw: Any,
) -> Exchange:
    """The exchange the proxy hands ingest for these response bytes: each write a chunk, only
    the first `kept` bytes of them kept (a true prefix, as the proxy keeps up to its cap),
    `response_bytes` counting all of them."""
    body, path, _ = STREAMS[api]
    chunks, left = [], sum(map(len, wire)) if kept is None else kept
    for i, piece in enumerate(wire):
        if left <= 0:
            break
        chunks.append((1000.0 + i, piece[:left]))
        left -= len(piece)
    headers = [("content-type", "text/event-stream")]
    if encoding:
        headers.append(("content-encoding", encoding))
    return Exchange(
        uid="u",
        api=api,
        transport="sse",
        method="POST",
        scheme="https",
        host="api.example.com",
        path=path,
        request_headers=kw.pop("request_headers", []),
        request_body=kw.pop("request_body", json.dumps(body).encode()),
        request_at=999.0,
        status=200,
        response_headers=headers,
        wire_chunks=chunks,
        response_bytes=sum(map(len, wire)),
        truncated=kept is not None and kept < sum(map(len, wire)),
        error=error,
        end_at=1100.0,
        **kw,
    )


def ingest(ex: Exchange) -> Round:
    """Framing and the adapter, as tracetap.ingest.normalize runs them."""
    frame_exchange(ex)
    return by_name(ex.api).to_round(ex)


def flags(rnd: Round) -> tuple[bool, bool, str | None]:
    return rnd.complete, rnd.truncated, rnd.error_type


@pytest.mark.parametrize("api", STREAMS)
def test_whole_stream_is_complete(api: str) -> None:
    rnd = ingest(recorded(api, sse(STREAMS[api][2]())))
    assert flags(rnd) == (True, False, None)


@pytest.mark.parametrize("api", STREAMS)
def test_stream_cut_at_the_cap_frames_only_the_events_inside_the_prefix(api: str) -> None:
    events = STREAMS[api][2]()
    wire = sse(events)
    whole = len(wire) // 2  # events wholly inside the prefix; it ends inside the next one
    rnd = ingest(recorded(api, wire, kept=sum(map(len, wire[:whole])) + len(wire[whole]) // 2))
    assert flags(rnd) == (False, True, RESPONSE_OVER_CAP)
    assert [name for _, name in rnd.stream_timeline] == [
        name or "message" for name, _ in events[:whole]
    ]


def test_event_over_the_cap_is_not_spliced_and_nothing_after_it_counts() -> None:
    """The probe's case: one event larger than the cap, then the stream's last events. The
    prefix ends inside the large event, so neither it nor message_stop is in the round."""
    events = anthropic_events()
    big = next(i for i, (name, data) in enumerate(events) if data.get("delta", {}).get("text"))
    events[big][1]["delta"]["text"] = "A" * 300_000 + "Z"
    wire = sse(events)
    # the proxy's chunks: a large write arrives in 64 KiB reads
    reads = [w[i : i + 65536] for w in wire for i in range(0, len(w), 65536)]
    cap = sum(map(len, wire[:big])) + 200_000
    rnd = ingest(recorded("anthropic_messages", reads, kept=cap))
    assert flags(rnd) == (False, True, RESPONSE_OVER_CAP)
    assert "message_stop" not in [name for _, name in rnd.stream_timeline]
    text = [b.get("text", "") for b in rnd.response["content"] if b.get("type") == "text"]
    assert "A" not in "".join(text) and "Z" not in "".join(text)
    assert rnd.response_bytes == sum(map(len, wire))


def test_decoded_cap_stops_at_the_event_that_passes_it() -> None:
    """A compressed stream the proxy kept whole but whose decoded events pass the cap: the
    framing stops there, never skipping the large event to keep the ones after it."""
    events = anthropic_events()
    big = next(i for i, (name, data) in enumerate(events) if data.get("delta", {}).get("text"))
    events[big][1]["delta"]["text"] = "A" * 2_000_000
    packed = gzip.compress(b"".join(sse(events)))
    ex = recorded("anthropic_messages", [packed], encoding="gzip")
    frame_exchange(ex, max_body=1_000_000)
    rnd = by_name(ex.api).to_round(ex)
    assert flags(rnd) == (False, True, RESPONSE_OVER_CAP)
    assert len(rnd.stream_timeline) == big  # the events before the large one, none after


@pytest.mark.parametrize("api", STREAMS)
def test_clean_eof_before_the_final_event_names_why(api: str) -> None:
    wire = sse(STREAMS[api][2]())
    for cut in (0, 1, len(wire) - 1):
        ex = recorded(api, wire[:cut])
        rnd = ingest(ex)
        assert flags(rnd) == (False, False, ENDED_EARLY), cut


@pytest.mark.parametrize("api", STREAMS)
def test_transport_error_before_the_final_event_is_named_never_complete(api: str) -> None:
    wire = sse(STREAMS[api][2]())
    msg = "HTTP/1 protocol error: peer closed connection without sending complete message body"
    for cut in range(len(wire)):
        half = wire[:cut] + [wire[cut][: len(wire[cut]) // 2]]  # the reset inside an event
        for pieces in (wire[:cut], half):
            rnd = ingest(recorded(api, pieces, error=msg))
            assert flags(rnd) == (False, False, "connection_error"), cut
            assert rnd.error_message == msg
    rnd = ingest(recorded(api, wire, error=msg))  # after the final event: the round is whole
    assert flags(rnd) == (True, False, None)


ERRORS: dict[str, tuple[str | None, Any]] = {
    "anthropic_messages": (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ),
    "openai_responses": (
        "error",
        {"type": "error", "code": "server_error", "message": "The server had an error"},
    ),
    "openai_chat": (None, {"error": {"type": "server_error", "message": "boom"}}),
}


@pytest.mark.parametrize("api", STREAMS)
def test_error_event_then_the_final_event_is_not_complete(api: str) -> None:
    events = STREAMS[api][2]()
    events.insert(len(events) - 1, ERRORS[api])
    rnd = ingest(recorded(api, sse(events)))
    assert not rnd.complete and rnd.error_type in ("overloaded_error", "server_error")


@pytest.mark.parametrize("api", STREAMS)
def test_request_cut_at_the_cap_is_flagged_with_no_content(api: str) -> None:
    body = json.dumps(STREAMS[api][0]).encode()
    ex = recorded(
        api,
        sse(STREAMS[api][2]()),
        request_body=body[: len(body) // 2],
        request_headers=[("content-length", str(len(body)))],
        error=REQUEST_OVER_CAP,
    )
    ex.truncated = True  # as the proxy marks it
    rnd = ingest(ex)
    assert flags(rnd) == (False, True, REQUEST_OVER_CAP)
    assert rnd.request_bytes == len(body)  # the size sent, from content-length
    assert rnd.envelope == {} and rnd.messages == []
    assert rnd.response_id is not None  # the response is still read


@pytest.mark.parametrize(
    ("encoding", "packed", "message"),
    [
        ("zstd", b"\x28\xb5\x2f\xfd garbage", "invalid zstd data"),
        ("gzip", b"\x1f\x8b garbage", "invalid gzip data"),
        ("br", b"\xff\xff\xff garbage", "invalid br data"),
        ("zstd", zstandard.compress(b'{"model": "m", "messages": []}' * 50)[:40], None),
        ("gzip", gzip.compress(b'{"model": "m", "messages": []}' * 50)[:40], None),
        ("deflate", zlib.compress(b'{"model": "m", "messages": []}' * 50)[:30], None),
        ("br", brotli.compress(b'{"model": "m", "messages": []}' * 50)[:20], None),
    ],
    ids=["zstd", "gzip", "br", "zstd-cut", "gzip-cut", "deflate-cut", "br-cut"],
)
def test_undecodable_request_body_is_named(encoding: str, packed: bytes, message: str) -> None:
    """Corrupt bytes, or a compressed stream that stops before its end (zlib and zstd
    decode those without an error)."""
    with pytest.raises(ValueError) as err:
        decode_body(packed, encoding)
    assert str(err.value) == (message or f"truncated {encoding} data")
    for good in (b"", b'{"a": 1}'):
        assert decode_body(_pack(good, encoding), encoding) == good


def _pack(data: bytes, encoding: str) -> bytes:
    if encoding == "zstd":
        return zstandard.compress(data)
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    return bytes(brotli.compress(data))


@pytest.mark.parametrize("api", STREAMS)
def test_undecodable_request_makes_the_round_incomplete(api: str) -> None:
    ex = recorded(
        api,
        sse(STREAMS[api][2]()),
        request_body=b"\x28\xb5\x2f\xfd garbage",
        error="request body: invalid zstd data",  # as ingest's normalize names it
    )
    ex.request_encoding = "zstd"
    rnd = ingest(ex)
    assert flags(rnd) == (False, False, "request body: invalid zstd data")
    assert rnd.envelope == {}  # the still-encoded bytes are not content
    assert rnd.request_bytes == len(b"\x28\xb5\x2f\xfd garbage")


def test_corrupt_response_encoding_is_named() -> None:
    wire = sse(anthropic_events())
    good = zlib.compressobj(wbits=31)
    head = good.compress(b"".join(wire[:3])) + good.flush(zlib.Z_SYNC_FLUSH)
    rnd = ingest(recorded("anthropic_messages", [head, b"\x00garbage" * 10], encoding="gzip"))
    assert flags(rnd) == (False, False, "response body: invalid gzip data")
    assert len(rnd.stream_timeline) == 3


def test_whole_json_body_cut_at_the_cap() -> None:
    body = json.dumps({"id": "msg_1", "type": "message", "content": []}).encode()
    ex = recorded("anthropic_messages", [body], kept=10)
    ex.transport = "http"
    ex.response_headers = [("content-type", "application/json")]
    rnd = ingest(ex)
    assert flags(rnd) == (False, True, RESPONSE_OVER_CAP)


def test_websocket_messages_are_not_taken_for_a_cut() -> None:
    """WebSocket exchanges come framed (events, no kept chunks) with their bytes counted."""
    ex = recorded("openai_responses", [])
    ex.transport, ex.response_headers = "websocket", []
    ex.events = [
        StreamEvent(1000.0 + i, n, json.dumps(d)) for i, (n, d) in enumerate(responses_events())
    ]
    ex.response_bytes = sum(len(e.data) for e in ex.events)
    rnd = ingest(ex)
    assert flags(rnd) == (True, False, None)
