"""Turns the response bytes the proxy kept (raw chunks, each with its arrival time) into stream
events or a decoded body, in the ingest process: the proxy's hot path only appends chunks.

An SSE event is timestamped with the arrival of the chunk that completed it.
"""

from __future__ import annotations

from itertools import starmap
from operator import itemgetter

from tracetap.model import Exchange, StreamEvent
from tracetap.wire.decoding import decompressor
from tracetap.wire.sse import SSEParser, frame_whole

__all__ = ["DEFAULT_MAX_BODY", "frame_exchange"]

DEFAULT_MAX_BODY = 16 * 1024 * 1024


def frame_exchange(ex: Exchange, max_body: int | None = None) -> None:
    """Decode and frame `ex.wire_chunks` into `ex.events` (SSE) or `ex.response_body`.

    Decoded content beyond `max_body` bytes (default: the larger of DEFAULT_MAX_BODY and the
    raw bytes kept) is not kept and the round is marked truncated, so a small compressed
    response cannot expand without bound. A corrupt or unsupported encoding keeps what was
    decoded before it and records the error; it never raises.
    """
    chunks, ex.wire_chunks = ex.wire_chunks, []
    if not chunks:
        return
    if max_body is None:
        max_body = max(DEFAULT_MAX_BODY, sum(map(len, map(itemgetter(1), chunks))))
    encoding = ex.header("content-encoding", response=True)
    decoder = decompressor(encoding)
    if decoder is False:
        ex.error = ex.error or f"unsupported response content-encoding {encoding!r}"
        return
    parser = SSEParser() if ex.transport == "sse" else None
    kept = 0
    whole = frame_whole(chunks) if parser is not None and decoder is None else None
    if whole is not None:  # the common case at once (see frame_whole)
        _keep(ex, whole, kept, max_body)
        return
    body = bytearray()
    last_at = chunks[-1][0]
    for at, chunk in chunks + [(last_at, b"")]:
        try:
            if chunk:
                data = decoder.decompress(chunk) if decoder is not None else chunk
            else:  # end of the stream
                data = decoder.flush() if decoder is not None and hasattr(decoder, "flush") else b""
        except Exception:  # corrupt compressed stream: keep what decoded before it
            ex.error = ex.error or "undecodable response content-encoding"
            if parser is None:
                break
            data, chunk = b"", b""
        if parser is None:
            if kept + len(data) > max_body:
                ex.truncated = True
                break
            body += data
            kept += len(data)
            continue
        events = parser.feed(data) if data else []
        if not chunk:
            events += parser.flush()
        kept = _keep(ex, [(at, name, payload) for name, payload in events], kept, max_body)
        if not chunk:
            break
    if parser is None:
        ex.response_body = bytes(body)


def _keep(ex: Exchange, events: list[tuple[float, str, str]], kept: int, max_body: int) -> int:
    """Append the events (arrival, name, data) to `ex.events` while their data fits in
    `max_body` with the `kept` bytes before them (64 more an event); the round is truncated
    where one does not. Returns the bytes kept."""
    size = sum(map(len, map(itemgetter(2), events))) + 64 * len(events)
    if kept + size <= max_body:  # none is cut: made in one C loop
        ex.events += starmap(StreamEvent, events)
        return kept + size
    for at, name, payload in events:
        if kept + len(payload) > max_body:
            ex.truncated = True
            continue
        kept += len(payload) + 64
        ex.events.append(StreamEvent(at, name, payload))
    return kept
