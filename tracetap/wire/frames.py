"""Turns the response bytes the proxy kept (raw chunks, each with its arrival time) into stream
events or a decoded body, in the ingest process: the proxy's hot path only appends chunks.

An SSE event is timestamped with the arrival of the chunk that completed it.
"""

from __future__ import annotations

from itertools import starmap
from operator import itemgetter

from tracetap.model import Exchange, StreamEvent
from tracetap.wire.decoding import decompressor
from tracetap.wire.faults import RESPONSE_OVER_CAP
from tracetap.wire.sse import SSEParser, frame_whole

__all__ = ["DEFAULT_MAX_BODY", "frame_exchange"]

DEFAULT_MAX_BODY = 16 * 1024 * 1024


def frame_exchange(ex: Exchange, max_body: int | None = None) -> None:
    """Decode and frame `ex.wire_chunks` into `ex.events` (SSE) or `ex.response_body`.

    What is framed is always a true prefix of the stream: the events wholly inside it, or the
    body's first bytes. It ends early, and the round is marked truncated with
    `RESPONSE_OVER_CAP`, when the proxy kept fewer bytes than passed through (its cap: it keeps
    a prefix, `ex.response_bytes` counts them all) or when the decoded content would pass
    `max_body` (default: the larger of DEFAULT_MAX_BODY and the raw bytes kept), so a small
    compressed response cannot expand without bound. A corrupt or unsupported encoding keeps
    what was decoded before it and records the error; it never raises.
    """
    chunks, ex.wire_chunks = ex.wire_chunks, []
    if not chunks:  # nothing kept (no response), or WebSocket messages, framed as they came
        return
    raw = sum(map(len, map(itemgetter(1), chunks)))
    cut = ex.response_bytes > raw  # the proxy stopped keeping at its cap
    if cut:
        _truncated(ex)
    if max_body is None:
        max_body = max(DEFAULT_MAX_BODY, raw)
    encoding = ex.header("content-encoding", response=True)
    decoder = decompressor(encoding)
    if decoder is False:
        ex.error = ex.error or f"response body: unsupported content-encoding {encoding!r}"
        return
    parser = SSEParser() if ex.transport == "sse" else None
    if parser is not None and decoder is None and not cut and raw <= max_body:
        whole = frame_whole(chunks)  # the common case at once (see frame_whole)
        if whole is not None:
            ex.events += starmap(StreamEvent, whole)
            return
    body = bytearray()
    kept = 0
    ended = True  # the whole stream was read: a last event without its blank line counts
    for at, chunk in chunks + [(chunks[-1][0], b"")]:  # b"": the end, to flush the decoder
        try:
            if chunk:
                data = decoder.decompress(chunk) if decoder is not None else chunk
            else:
                data = decoder.flush() if decoder is not None else b""
        except Exception:  # corrupt compressed stream: keep what decoded before it
            ex.error = ex.error or f"response body: invalid {encoding} data"
            ended = False
            break
        if kept + len(data) > max_body:
            data = data[: max_body - kept]
            _truncated(ex)
            ended = False
        kept += len(data)
        if parser is None:
            body += data
        elif data:
            ex.events += [StreamEvent(at, name, payload) for name, payload in parser.feed(data)]
        if not ended:
            break
    if parser is None:
        ex.response_body = bytes(body)
    elif ended and not cut:
        ex.events += [StreamEvent(chunks[-1][0], name, data) for name, data in parser.flush()]


def _truncated(ex: Exchange) -> None:
    """Mark the response cut at a cap (a transport error already there stays the reason)."""
    ex.truncated = True
    ex.error = ex.error or RESPONSE_OVER_CAP
