"""Incremental Server-Sent Events framing over arbitrary byte chunks.

Runs in the ingest step on the chunks the proxy kept (tracetap.wire.frames), off its hot path;
it only splits events, the adapters decode their JSON.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, repeat

__all__ = ["SSEParser", "frame_whole"]

# The form the model APIs send: each event an optional `event: ` line and one `data: ` line,
# then a blank line. A stream in this form (and only then) is framed by one regex split.
_EVENT = re.compile(r"(?:event: ([^\n]*)\n)?data: ([^\n]*)\n\n")


class SSEParser:
    """Split a byte stream into (event name, data) pairs as the SSE spec frames them.

    Lines may end in CRLF, LF or CR and may be split anywhere across chunks. Comment lines
    (starting with ':') and `id`/`retry` fields are ignored; an event without an `event:` field
    is named "message".
    """

    __slots__ = ("_buf", "_event", "_data", "_pending_cr")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._event: str | None = None
        self._data: list[str] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """Add a chunk; return the events completed by it."""
        out: list[tuple[str, str]] = []
        if not chunk:
            return out
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._pending_cr = chunk[-1:] == b"\r"
        buf = self._buf
        buf += chunk
        if b"\r" not in buf:  # lines end in LF alone, as the model APIs send them
            last = buf.rfind(b"\n")
            if last >= 0:
                # the complete lines at once: no LF is inside a UTF-8 sequence, so decoding
                # them together replaces what decoding each would
                lines = buf[:last].decode("utf-8", "replace").split("\n")
                del buf[: last + 1]
                self._lines(lines, out)
            return out
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if nl < 0 and cr < 0:
                break
            if cr >= 0 and (nl < 0 or cr < nl):
                end, nxt = cr, cr + 2 if cr + 1 < n and buf[cr + 1] == 0x0A else cr + 1
                if cr + 1 == n:  # lone CR at the end: a CRLF may be split across chunks
                    nxt = n
            else:
                end, nxt = nl, nl + 1
            self._line(bytes(buf[start:end]), out)
            start = nxt
        del buf[:start]
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of stream: dispatch a final event that lacked its blank line."""
        out: list[tuple[str, str]] = []
        if self._buf:
            self._line(bytes(self._buf), out)
            self._buf.clear()
        self._line(b"", out)
        return out

    def _lines(self, lines: list[str], out: list[tuple[str, str]]) -> None:
        """`_line` for each of `lines`, decoded already."""
        events, self._event, self._data = _dispatch(lines, self._event, self._data)
        out += [(name, data) for _, name, data in events]

    def _line(self, raw: bytes, out: list[tuple[str, str]]) -> None:
        self._lines([raw.decode("utf-8", "replace")], out)


def _dispatch(
    lines: list[str], event: str | None, data: list[str]
) -> tuple[list[tuple[int, str, str]], str | None, list[str]]:
    """The events `lines` complete by the SSE rules, each as (the index of the blank line that
    completes it, its name, its data), and the event still open after them (its name and data
    lines so far, given as `event` and `data` for the lines before). One loop for a chunk's or a
    stream's lines: an event is three lines, an agent's response hundreds of events."""
    out: list[tuple[int, str, str]] = []
    for i, line in enumerate(lines):
        if not line:
            if data or event is not None:
                out.append((i, event or "message", "\n".join(data)))
            event, data = None, []
            continue
        name, sep, value = line.partition(":")
        if not name:  # a comment
            continue
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    return out, event, data


def frame_whole(chunks: Sequence[tuple[float, bytes]]) -> list[tuple[float, str, str]] | None:
    """The events of a whole stream at once, as `SSEParser` fed the chunks one by one (then
    flushed) gives them, each with the arrival time of the chunk that completed it; None when
    a CR is in the stream (feed it chunk by chunk). One regex split for the APIs' own form, else
    one pass over the lines; never a call per chunk: a response arrives in hundreds of chunks."""
    parts = [c for _, c in chunks]
    raw = b"".join(parts)
    if b"\r" in raw or not chunks:
        return None
    # the same lines decoded at once: no LF is inside a UTF-8 sequence
    text = raw.decode("utf-8", "replace")
    whole = _plain(chunks, parts, text)
    if whole is not None:
        return whole
    lines = text.split("\n")
    starts = list(accumulate((len(line) + 1 for line in raw.split(b"\n")), initial=0))
    ends = list(accumulate(map(len, parts)))  # where each chunk ends in `raw`
    last = len(lines) - 1  # the line after the last LF: the end of the stream completes it
    events, _, _ = _dispatch([*lines, ""], None, [])  # "": the end of the stream
    return [
        (chunks[-1][0] if i >= last else chunks[bisect_right(ends, starts[i])][0], name, data)
        for i, name, data in events
    ]


def _plain(
    chunks: Sequence[tuple[float, bytes]], parts: list[bytes], text: str
) -> list[tuple[float, str, str]] | None:
    """`frame_whole` of a stream in the APIs' plain form (`text`, its chunks' bytes `parts`
    decoded), when no chunk boundary splits an event's closing blank line: every LF pair in
    it closes an event, so each chunk closes as many events as it holds LF pairs. None for
    any other stream."""
    split = _EVENT.split(text)  # [between, name, data, between, ..., after the last]
    if any(split[::3]):  # text outside the events
        return None
    names, datas = split[1::3], split[2::3]
    if None in names or "" in names:
        names = [name or "message" for name in names]
    if len(parts) == len(datas) and all(map(bytes.endswith, parts, repeat(b"\n\n"))):
        times: Iterable[float] = [at for at, _ in chunks]  # an event a chunk, as APIs flush
    else:
        counts = list(map(bytes.count, parts, repeat(b"\n\n")))
        if sum(counts) != len(datas):
            return None
        times = chain.from_iterable(map(repeat, [at for at, _ in chunks], counts))
    return list(zip(times, names, datas))
