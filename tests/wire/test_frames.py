"""Framing the kept response chunks off the hot path: events carry the arrival time of the chunk
that completed them; compressed, corrupt and oversized responses are handled without raising."""

from __future__ import annotations

import gzip
import zlib

import zstandard

from tracetap.model import Exchange
from tracetap.wire.frames import frame_exchange


def _ex(
    chunks: list[tuple[float, bytes]], *, transport: str = "sse", encoding: str | None = None
) -> Exchange:
    headers = [("content-type", "text/event-stream" if transport == "sse" else "application/json")]
    if encoding:
        headers.append(("content-encoding", encoding))
    return Exchange(
        uid="u",
        api="anthropic_messages",
        transport=transport,
        method="POST",
        scheme="https",
        host="h",
        path="/v1/messages",
        request_headers=[],
        request_body=b"{}",
        request_at=0.0,
        response_headers=headers,
        wire_chunks=chunks,
    )


def test_events_take_the_time_of_the_chunk_that_completed_them() -> None:
    ex = _ex([(1.0, b"event: a\ndata: 1\n"), (2.0, b"\nevent: b\ndata: 2"), (3.0, b"\n\n")])
    frame_exchange(ex)
    assert [(e.at, e.name, e.data) for e in ex.events] == [(2.0, "a", "1"), (3.0, "b", "2")]
    assert ex.wire_chunks == [] and ex.error is None


def test_unterminated_last_event_is_kept_at_the_last_chunk_time() -> None:
    ex = _ex([(1.0, b"event: a\ndata: 1\n\n"), (4.0, b'event: cut\ndata: {"x":')])
    frame_exchange(ex)
    assert [(e.at, e.name) for e in ex.events] == [(1.0, "a"), (4.0, "cut")]


def test_gzip_stream_split_anywhere() -> None:
    raw = gzip.compress(b"event: a\ndata: hello\n\nevent: b\ndata: world\n\n")
    ex = _ex([(float(i), raw[i : i + 3]) for i in range(0, len(raw), 3)], encoding="gzip")
    frame_exchange(ex)
    assert [(e.name, e.data) for e in ex.events] == [("a", "hello"), ("b", "world")]


def test_whole_body_is_decoded() -> None:
    raw = zstandard.ZstdCompressor().compress(b'{"id": "msg_1"}')
    ex = _ex([(1.0, raw[:5]), (2.0, raw[5:])], transport="http", encoding="zstd")
    frame_exchange(ex)
    assert ex.response_body == b'{"id": "msg_1"}' and ex.events == []


def test_corrupt_stream_keeps_what_decoded_before_it() -> None:
    good = zlib.compressobj(wbits=31)
    head = good.compress(b"event: a\ndata: 1\n\n") + good.flush(zlib.Z_SYNC_FLUSH)
    ex = _ex([(1.0, head), (2.0, b"\x00garbage" * 10)], encoding="gzip")
    frame_exchange(ex)
    assert [(e.name, e.data) for e in ex.events] == [("a", "1")]
    assert ex.error == "response body: invalid gzip data"


def test_unsupported_encoding_is_an_error_not_a_crash() -> None:
    ex = _ex([(1.0, b"???")], encoding="x-custom")
    frame_exchange(ex)
    assert ex.events == [] and "x-custom" in (ex.error or "")


def test_decoded_size_is_capped() -> None:
    """The cap bounds the decoded bytes; what is framed is their prefix: the events wholly
    inside it, never one after a gap."""
    bomb = gzip.compress(b"0" * 5_000_000)  # ~5 kB that would expand to 5 MB
    ex = _ex([(1.0, bomb)], transport="http", encoding="gzip")
    frame_exchange(ex, max_body=1_000_000)
    assert ex.truncated and ex.response_body == b"0" * 1_000_000
    assert ex.error == "truncated: response over max_body"
    stream = b"data: " + b"x" * 650 + b"\n\n" + b"data: y\n\n"  # 658 bytes, then 9
    for chunks, encoding in (
        ([(1.0, stream)], None),  # framed at once
        ([(1.0, gzip.compress(stream))], "gzip"),  # framed chunk by chunk
        ([(1.0, stream[:300]), (2.0, stream[300:])], None),
    ):
        sse = _ex(chunks, encoding=encoding)
        frame_exchange(sse, max_body=660)
        assert sse.truncated and [e.data for e in sse.events] == ["x" * 650]
        assert sse.error == "truncated: response over max_body"
        whole = _ex(chunks, encoding=encoding)
        frame_exchange(whole, max_body=len(stream))
        assert not whole.truncated and [e.data for e in whole.events] == ["x" * 650, "y"]
